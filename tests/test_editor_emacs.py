"""A real editor end to end: batch Emacs (Debian's emacs-nox; on Emacs 28 with Debian's
elpa-eglot, Eglot 1.9) loads editors/emacs/hunkwise-eglot.el, opens a file of a temp git
repository, runs M-x eglot against the real server on a tiny bundle, edits the file, gets
hunkwise's diagnostic through Flymake, applies "Apply suggested refinement" from
M-x hunkwise-refine's menu and runs `hunkwise-edit' on a range; the buffer must read
exactly as the server's edits say. The Emacs side is editors/emacs/test/e2e.el; the
text, the change and the edit arithmetic are tests/editor_support.py's."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
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
    missing_editor,
    text_edits,
)
from tests.gitrepo import GitRepo, git_env
from tests.processes import alive

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "editors" / "emacs" / "test" / "e2e.el"
#: Where Debian's elpa-* packages put Eglot (and the newer project/xref it needs) for
#: Emacs 28, which has no Eglot built in.
ELPA_DIRS = ["/usr/share/emacs/site-lisp/elpa"]
MIN_EMACS = (28, 1)
TIMEOUT_S = 150


def find_emacs() -> tuple[str | None, str]:
    """The emacs binary, if it is on PATH, new enough and has Eglot; else a reason."""
    binary = shutil.which("emacs")
    if binary is None:
        return None, "emacs is not installed (apt-get install emacs-nox elpa-eglot)"
    try:
        output = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"{binary} --version failed: {error}"
    match = re.search(r"GNU Emacs (\d+)\.(\d+)", output)
    version = (int(match.group(1)), int(match.group(2))) if match else None
    if version is None or version < MIN_EMACS:
        return None, f"{binary} is not Emacs 28.1 or newer (version {version})"
    has_eglot = version >= (29, 1) or any(
        (Path(base) / entry.name / "eglot.el").exists()
        for base in ELPA_DIRS
        if Path(base).is_dir()
        for entry in Path(base).iterdir()
        if entry.name.startswith("eglot-")
    )
    if not has_eglot:
        return None, f"Emacs {version} has no Eglot (apt-get install elpa-eglot)"
    return binary, ""


def run_emacs(tmp_path: Path, bundle: Path, emacs: str) -> tuple[dict[str, Any], float]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add the totals module", totals_dot_py=BASE_TEXT)
    out = tmp_path / "result.json"
    state = tmp_path / "emacs-state"
    state.mkdir()
    config = {
        "python": os.environ.get("HUNKWISE_PYTHON") or sys.executable,
        "bundle": str(bundle),
        "file": str(repo.path / "totals.py"),
        "out": str(out),
        "state": str(state),
        "elpa_dirs": ELPA_DIRS,
        "change": CHANGE,
        "instruction_range": INSTRUCTION_RANGE,
        "instruction": INSTRUCTION,
        "timeout_s": TIMEOUT_S - 30,
    }
    env = {**repo.env, "HUNKWISE_EMACS_TEST": json.dumps(config)}
    command = [emacs, "--batch", "-Q", "-l", str(DRIVER)]
    started = time.monotonic()
    try:
        finished = subprocess.run(
            command,
            cwd=repo.path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        returncode: int | None = finished.returncode
        output = finished.stdout + finished.stderr
    except subprocess.TimeoutExpired as error:
        returncode, output = None, f"emacs did not exit in {error.timeout} s"
    elapsed = time.monotonic() - started
    result = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    assert returncode == 0 and result.get("ok") is True and not result.get("error"), (
        f"emacs exited {returncode}: {result.get('error')}\nsteps: {result.get('steps')}\n"
        f"{output[-3000:]}\nevents:\n{result.get('events')}\nstderr:\n{result.get('stderr')}"
    )
    return result, elapsed


def buffer_file_text(text: str) -> str:
    """A buffer's text as python-mode saves it (``require-final-newline``)."""
    return text if text.endswith("\n") else text + "\n"


EMACS, EMACS_MISSING = find_emacs()


@pytest.mark.slow
def test_emacs_eglot_reviews_refines_and_edits(tmp_path: Path, tiny_bundle: Path):
    if EMACS is None:
        missing_editor(EMACS_MISSING)
    assert EMACS is not None
    result, elapsed = run_emacs(tmp_path, tiny_bundle, EMACS)
    assert result["steps"][-1] == "done"
    assert result["major_mode"] == "python-mode"
    assert result["server_name"] == "hunkwise"
    assert result["flymake_mode"] is True
    assert result["status"]["state"] == "ready"
    assert Path(result["status"]["bundle"]).resolve() == tiny_bundle.resolve()

    # The user's edit, then a Flymake diagnostic on the changed lines (Information: a note).
    lines = BASE_TEXT.splitlines(keepends=True)
    edited = lines[: CHANGE["start"]] + [f"{line}\n" for line in CHANGE["lines"]]
    assert result["edited_text"] == "".join(edited + lines[CHANGE["end"] :])
    diagnostic = result["diagnostic"]
    assert diagnostic["source"] == "hunkwise"
    assert diagnostic["code"] == "review-needed"
    assert diagnostic["severity"] == 3
    assert diagnostic["flymake_type"] == "eglot-note"
    changed = range(CHANGE["start"], CHANGE["start"] + len(CHANGE["lines"]))
    assert diagnostic["line"] in changed and diagnostic["flymake_line"] in changed
    assert diagnostic["message"]
    assert diagnostic["flymake_text"] == (f"hunkwise [review-needed]: {diagnostic['message']}")
    # Where and what `hunkwise review` prints for the same change.
    repo = tmp_path / "repo"
    (repo / "totals.py").write_text(result["edited_text"], encoding="utf-8")
    (finding,) = cli_findings(repo, tiny_bundle, git_env(repo.parent / f".home-{repo.name}"))
    line, column, texts = as_the_cli_says(finding)
    assert (diagnostic["line"], diagnostic["character"]) == (line, column)
    assert diagnostic["message"] in texts

    # M-x hunkwise-refine offered the finding's two quick fixes, the refinement first.
    menu = result["menu"]
    assert menu["titles"] == ["Apply suggested refinement", "Dismiss this review finding"]
    assert "(default Apply suggested refinement)" in menu["prompt"]

    # Each edit came as workspace/applyEdit (Eglot 1.9 does not resolve code actions),
    # Eglot asked before applying it (eglot-confirm-server-initiated-edits, the default),
    # and it left the buffer exactly as the server's edit says (Eglot 1.9 counts
    # UTF-16 code units).
    assert len(result["edits"]) == 2
    assert len(result["prompts"]) == 2
    assert all("Server wants to edit" in prompt for prompt in result["prompts"])
    for name in ("refinement", "instruction_edit"):
        step = result[name]
        assert step["edit"].get("documentChanges"), f"{name}: not a versioned edit"
        assert text_edits(step["edit"]), f"{name}: the server sent no text edit"
        expected = apply_workspace_edit(step["before"], step["edit"], "utf-16")
        assert buffer_file_text(step["after"]) == expected, name
    assert result["refinement"]["before"] == result["edited_text"]
    assert result["instruction_edit"]["before"] == result["refinement"]["after"]

    # hunkwise-edit replaced exactly its lines, line breaks included.
    step = result["instruction_edit"]
    (edit,) = text_edits(step["edit"])
    first, last = INSTRUCTION_RANGE
    assert edit["range"] == {
        "start": {"line": first - 1, "character": 0},
        "end": {"line": last, "character": 0},
    }
    kept = step["before"].splitlines(keepends=True)[last:]
    assert step["after"].endswith("".join(kept))

    assert result["status_lines"][0].endswith(": ready")

    # The server is gone: it answered `shutdown' within Eglot's 1.5 s (else
    # eglot-shutdown signals an error), and Eglot deleted its process.
    assert "shutdown_error" not in result
    assert result["server_process"] in ("exit", "signal")
    deadline = time.monotonic() + 10
    while alive(result["server_pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(result["server_pid"])
    assert elapsed < TIMEOUT_S
