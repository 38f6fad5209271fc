"""git as the oracle of the diff tests: an environment in which no user or system config
(diff.algorithm, diff.context, diff drivers, attributes) can change what git prints, a
runner that decodes its output as hunkwise reads git, and the hunk part of a diff."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def isolated_env(home: Path) -> dict[str, str]:
    """The environment minus git's variables, with ``home`` as the home and config folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    return env


def git(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run git; its output decoded the way hunkwise reads git (undecodable bytes kept)."""
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
    # `git diff --no-index` exits 1 when the files differ
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.stdout.decode("utf-8", "surrogateescape")


def hunk_part(diff: str) -> str:
    """The hunks of git's output: every line from an "@@" line up to the next file header."""
    kept, in_hunk = [], False
    for line in diff.split("\n"):
        if line.startswith("diff --git "):
            in_hunk = False
        elif line.startswith("@@ "):
            in_hunk = True
        if in_hunk and line:
            kept.append(line)
    return "\n".join(kept)
