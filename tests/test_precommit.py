"""The pre-commit hooks of ``.pre-commit-hooks.yaml``, run by pre-commit itself on a staged
change in a temp repository, with the session's really trained tiny bundle.

``pre-commit try-repo`` runs the shipped hooks as a user's config would: it clones a
snapshot of this repository, builds a fresh virtualenv for ``language: python`` and
pip-installs hunkwise into it, dependencies and all. ``PIP_CONSTRAINT`` pins every
dependency to the version this test's environment has (``torch==2.13.0`` above all: any
other would be a huge download, or none offline). That install is real and takes minutes,
try-repo repeats it on every call and cannot pass hook ``args``, so it runs once. What
``args`` do (``--bundle``, ``--threshold``), a missing bundle and a ``git commit`` blocked
through ``pre-commit install`` go through docs/ci.md's ``repo: local`` hook (read from
the doc), which runs the hunkwise already installed and needs no second install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from tests.gitrepo import GitRepo
from tests.learnable_repo import TrainedBundle

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / ".pre-commit-hooks.yaml"
DOCS = ROOT / "docs" / "ci.md"
#: What the learnt history gets fixed for: a function that prints a debug line.
DEBUG_FUNCTION = (
    'def total_price(value):\n    """Total price."""\n'
    '    print("debug total_price", value)\n    result = value + 1\n    return result\n'
)
#: The hook's review of the staged function, `path:line[:column]: warning: ...`.
FINDING = re.compile(r"^app/module_1\.py:\d+(:\d+)?: warning: .*\[review-needed\]", re.MULTILINE)


def local_hook_of_the_docs() -> dict:
    """The `repo: local` hook docs/ci.md gives for a machine with hunkwise on PATH."""
    blocks = re.findall(r"^( *)```yaml\n(.*?)^\1```$", DOCS.read_text(), re.DOTALL | re.MULTILINE)
    [block] = [textwrap.dedent(body) for _, body in blocks if "repo: local" in body]
    [repo] = yaml.safe_load(block)
    [hook] = repo["hooks"]
    return hook


def pre_commit(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


@dataclass(frozen=True)
class HookRun:
    status: str  # Passed, Failed, Skipped
    hook_id: str | None  # printed for a hook that failed or is verbose
    exit_code: int  # 0 when pre-commit prints none (a hook that passed)
    output: str  # what the hook printed, shown when it failed or is verbose


def hook_runs(output: str) -> dict[str, HookRun]:
    """pre-commit's report, by hook name: a `name....Status` line, then (for a failing or a
    verbose hook) `- hook id: ID`, `- exit code: N` and the hook's output."""
    heads = list(
        re.finditer(
            r"^(.+?)\.{3,}(?:\(no files to check\))?(Passed|Failed|Skipped)$", output, re.MULTILINE
        )
    )
    runs = {}
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        block = output[head.end() : following.start() if following else len(output)]
        hook_id = re.search(r"^- hook id: (\S+)$", block, re.MULTILINE)
        code = re.search(r"^- exit code: (\d+)$", block, re.MULTILINE)
        runs[head.group(1)] = HookRun(
            status=head.group(2),
            hook_id=hook_id.group(1) if hook_id else None,
            exit_code=int(code.group(1)) if code else 0,
            output=re.sub(r"^- (hook id|duration|exit code): .*\n", "", block, flags=re.MULTILINE),
        )
    return runs


def pinned_versions(path: Path) -> Path:
    """A pip constraints file: every distribution of this environment at its version, but
    hunkwise itself (the hook installs it from the snapshot) and the installer's own."""
    skip = {"hunkwise", "pip", "setuptools", "wheel"}
    pins = {
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"] and dist.metadata["Name"].lower() not in skip
    }
    path.write_text("\n".join(sorted(pins)) + "\n", encoding="utf-8")
    return path


def snapshot_of_this_repository(path: Path) -> GitRepo:
    """This repository's files as a commit of theirs would hold them (tracked and new, not
    ignored), committed into a fresh repository: what a user's pre-commit clones, with the
    working tree's uncommitted changes and nothing of its git state."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode("utf-8", "surrogateescape")
    repo = GitRepo(path)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not listed out
            (path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, path / name, follow_symlinks=False)
    repo.commit("Snapshot of hunkwise")
    return repo


@pytest.fixture
def staged(trained: TrainedBundle, tmp_path: Path) -> GitRepo:
    """A clone of the history the bundle learnt, with a debug-printing function staged."""
    root = tmp_path / "staged"
    subprocess.run(
        ["git", "clone", "-q", str(trained.repo.path), str(root / "project")],
        check=True,
        env=trained.repo.env,
    )
    repo = GitRepo(root / "project")  # its own home and git configuration; keeps the clone
    module = repo.path / "app" / "module_1.py"
    module.write_text(module.read_text(encoding="utf-8") + DEBUG_FUNCTION, encoding="utf-8")
    repo.git("add", "app/module_1.py")
    return repo


def hook_env(repo: GitRepo, root: Path, *, test_hunkwise: bool, **extra: str) -> dict[str, str]:
    """The repository's git environment, with everything pre-commit, pip, virtualenv and
    hunkwise write (hook environments, caches, temp files) kept under ``root``; the test's
    own ``hunkwise`` on PATH or (so that only a hook environment's can answer) off it."""
    for name in ("cache", "pre-commit", "tmp", "data", "config"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in repo.env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    scripts = Path(sys.prefix) / "bin"
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p) != scripts]
    env.update(
        PATH=os.pathsep.join([str(scripts), *path] if test_hunkwise else path),
        XDG_CACHE_HOME=str(root / "cache"),
        XDG_DATA_HOME=str(root / "data"),
        XDG_CONFIG_HOME=str(root / "config"),
        PRE_COMMIT_HOME=str(root / "pre-commit"),
        TMPDIR=str(root / "tmp"),
        PRE_COMMIT_COLOR="never",
        HF_HUB_OFFLINE="1",
        PIP_NO_INPUT="1",
    )
    env.update(extra)
    return env


def git_commit(repo: GitRepo, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`git commit` of what is staged, its hooks and all (git prints theirs on stderr)."""
    return subprocess.run(
        ["git", "commit", "-m", "Add total price helper"],
        cwd=repo.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_manifest_is_valid(tmp_path: Path) -> None:
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit")}
    result = pre_commit("validate-manifest", str(MANIFEST), cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    text = MANIFEST.read_text(encoding="utf-8")
    assert text.count("entry: hunkwise review --staged") == 2
    assert text.count("pass_filenames: false") == 2


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the session's bundle may train first; the install is minutes
def test_try_repo_installs_the_hooks_and_a_flagged_change_fails(
    staged: GitRepo, trained: TrainedBundle, tmp_path: Path, monkeypatch
) -> None:
    from training.bundle import default_bundle_dir

    snapshot = snapshot_of_this_repository(tmp_path / "hunkwise")
    env = hook_env(
        staged,
        tmp_path,
        test_hunkwise=False,
        PIP_CONSTRAINT=str(pinned_versions(tmp_path / "pins.txt")),
    )
    # try-repo passes no args: the hooks find the bundle where training on this machine puts
    # it, and review at its threshold, set to the cut test_pipeline reviews at (a tiny
    # bundle's calibrated one may lie above its scores).
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])
    bundle = default_bundle_dir(staged.path)
    shutil.copytree(trained.bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["calibration"]["threshold"] = 0.5
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    result = pre_commit("try-repo", str(snapshot.path), cwd=staged.path, env=env)
    output = result.stdout + result.stderr
    # the snapshot itself (committed, clean), installed into a fresh hook environment
    assert "Creating temporary repo" not in output and "Installing environment for" in output
    runs = hook_runs(result.stdout)
    assert result.returncode == 1, output
    blocking, warning = runs["hunkwise review"], runs["hunkwise review (warn only)"]
    assert (blocking.hook_id, blocking.status, blocking.exit_code) == ("hunkwise", "Failed", 1)
    assert FINDING.search(blocking.output), output
    # warn-only: shown (the manifest's `verbose: true`), never failing
    assert (warning.hook_id, warning.status) == ("hunkwise-warn", "Passed"), output
    assert FINDING.search(warning.output), output


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hook_args_and_a_blocked_commit(staged: GitRepo, tiny_bundle: Path, tmp_path: Path) -> None:
    """The local hook of docs/ci.md in a real `git commit`: `--bundle` from args, a flagged
    change blocks the commit, `--threshold 1` lets it through; no bundle is one line."""
    config = tmp_path / "pre-commit-config.yaml"
    env = hook_env(staged, tmp_path, test_hunkwise=True)

    def use(*args: str) -> None:
        hook = {**local_hook_of_the_docs(), "args": list(args)}
        config.write_text(json.dumps({"repos": [{"repo": "local", "hooks": [hook]}]}))

    use()  # no bundle: nothing trained in this cache, none named
    missing = pre_commit("run", "-c", str(config), cwd=staged.path, env=env)
    run = hook_runs(missing.stdout)["hunkwise review"]
    assert missing.returncode == 1 and run.exit_code == 2, missing.stdout
    [line] = run.output.strip().splitlines()
    assert line.startswith("hunkwise: error: no hunkwise bundle at"), line
    assert "hunkwise train-from-repo" in line

    installed = pre_commit("install", "-c", str(config), cwd=staged.path, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    head = staged.head()

    use("--bundle", str(tiny_bundle), "--threshold", "0.5")
    blocked = git_commit(staged, env)
    assert blocked.returncode == 1, blocked.stdout + blocked.stderr
    assert FINDING.search(hook_runs(blocked.stdout + blocked.stderr)["hunkwise review"].output), (
        blocked.stderr
    )
    assert staged.head() == head

    use("--bundle", str(tiny_bundle), "--threshold", "1")
    allowed = git_commit(staged, env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert hook_runs(allowed.stdout + allowed.stderr)["hunkwise review"].status == "Passed", (
        allowed.stderr
    )
    assert staged.head() != head
