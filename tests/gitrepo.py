"""Real git repositories for tests: made in temp dirs with the git command line, with
fixed dates and an isolated configuration so results do not depend on the machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BASE_TIME = 1_700_000_000  # 2023-11-14, a fixed start for commit dates


def git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Author",
        GIT_COMMITTER_EMAIL="author@example.com",
        LC_ALL="C",
    )
    return env


class GitRepo:
    """A repository built commit by commit; each commit is one day after the previous."""

    def __init__(self, path: Path, bare: bool = False):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.home = self.path.parent / f".home-{self.path.name}"
        self.home.mkdir(exist_ok=True)
        self.env = git_env(self.home)
        self.tick = 0
        args = ["init", "-q", "-b", "main"] + (["--bare"] if bare else [])
        self.git(*args)

    def git(self, *args: str, input: bytes | None = None) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self.env,
            input=input,
            capture_output=True,
            check=True,
        )
        return result.stdout.decode("utf-8", "replace")

    def write(self, relpath: str, content: str | bytes) -> None:
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        target.write_bytes(content)

    def remove(self, relpath: str) -> None:
        self.git("rm", "-q", relpath)

    def move(self, old: str, new: str) -> None:
        (self.path / new).parent.mkdir(parents=True, exist_ok=True)
        self.git("mv", old, new)

    def commit(self, message: str, **files: str | bytes) -> str:
        """Write ``files`` (keyword names use "__" for "/" and "_dot_" for ".") and commit all."""
        for name, content in files.items():
            self.write(name.replace("__", "/").replace("_dot_", "."), content)
        self.tick += 1
        date = f"{BASE_TIME + self.tick * 86400} +0000"
        env = {**self.env, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        subprocess.run(["git", "add", "-A"], cwd=self.path, env=env, check=True)
        subprocess.run(
            ["git", "commit", "-q", "--allow-empty", "-m", message],
            cwd=self.path,
            env=env,
            check=True,
            capture_output=True,
        )
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def merge(self, branch: str, message: str) -> str:
        self.tick += 1
        date = f"{BASE_TIME + self.tick * 86400} +0000"
        env = {**self.env, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        subprocess.run(
            ["git", "merge", "-q", "--no-ff", "-m", message, branch],
            cwd=self.path,
            env=env,
            check=True,
            capture_output=True,
        )
        return self.head()
