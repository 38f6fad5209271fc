"""What the editor tests share: a missing editor skips the test with its reason on a
developer's machine, and fails it where the editors are required (``.ci/run`` exports
``HUNKWISE_REQUIRE_EDITORS=1``; ``CI`` set by a CI service counts too); the file, the
user's change and the instruction every editor test makes, and the arithmetic that applies
the server's edits to a buffer; and what ``hunkwise review`` prints for the same change,
which every editor must show."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.hunkwise_command import hunkwise
from training.evidence import Evidence
from training.review import Finding, finding_column

REQUIRE_VARIABLE = "HUNKWISE_REQUIRE_EDITORS"


def editors_required() -> bool:
    return bool(os.environ.get(REQUIRE_VARIABLE) or os.environ.get("CI"))


def missing_editor(reason: str) -> None:
    """Skip (or, where editors are required, fail) the calling test because ``reason``."""
    if editors_required():
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE} is set: the editors are required here)")
    pytest.skip(reason)


BASE_TEXT = """\
\"\"\"Totals of lists of numbers.\"\"\"

import math


def total(items):
    result = 0
    for item in items:
        result += item
    return result


def mean(items):
    return total(items) / len(items)
"""
#: The user's edit: line 9 (0-based 8) of BASE_TEXT replaced by a debug print and a change,
#: the pattern the tiny bundle's learnable history teaches to flag.
CHANGE = {
    "start": 8,
    "end": 9,
    "lines": [
        '        print("debug total", item)',
        "        result += item * 2",
    ],
}
#: Lines the refinement leaves alone (they are more than a hunk's context before the change).
INSTRUCTION_RANGE = [1, 3]
INSTRUCTION = "Add a module docstring"


def _index(text: str, line: int, character: int, encoding: str) -> int:
    """The string index of an LSP position in ``text``."""
    lines = text.splitlines(keepends=True)
    if line >= len(lines):
        return len(text)
    start = sum(len(item) for item in lines[:line])
    content = lines[line].rstrip("\r\n")
    codec = {"utf-8": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}[encoding]
    width = {"utf-8": 1, "utf-16": 2, "utf-32": 4}[encoding]
    prefix = content.encode(codec)[: character * width].decode(codec, errors="ignore")
    return start + len(prefix)


def text_edits(workspace_edit: dict[str, Any]) -> list[dict[str, Any]]:
    edits = [edit for changes in workspace_edit.get("changes", {}).values() for edit in changes]
    for change in workspace_edit.get("documentChanges", []):
        edits.extend(change.get("edits", []))
    return edits


def apply_workspace_edit(text: str, workspace_edit: dict[str, Any], encoding: str) -> str:
    """``text`` with the edit's text edits applied (the one document of an editor test)."""
    edits = text_edits(workspace_edit)
    spans = []
    for edit in edits:
        start, end = edit["range"]["start"], edit["range"]["end"]
        spans.append(
            (
                _index(text, start["line"], start["character"], encoding),
                _index(text, end["line"], end["character"], encoding),
                edit["newText"],
            )
        )
    for start, end, new_text in sorted(spans, reverse=True):
        text = text[:start] + new_text + text[end:]
    return text if text.endswith("\n") else text + "\n"  # a buffer always ends a line


#: The server settings of the editors' tests (editors/neovim/test/init.lua,
#: editors/emacs/test/e2e.el, the VS Code driver): every hunk flagged, 8-token comments.
EDITOR_SETTINGS = {"threshold": 0, "maxNewTokens": 8}


def cli_findings(repo: Path, bundle: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """``hunkwise review --json`` of ``repo``'s uncommitted changes with ``bundle`` and
    the editors' tests' settings (:data:`EDITOR_SETTINGS`)."""
    finished = hunkwise(
        "review", "--repo", str(repo), "--bundle", str(bundle), "--device", "cpu", "--json",
        "--exit-zero", "--threshold", str(EDITOR_SETTINGS["threshold"]),
        "--max-new-tokens", str(EDITOR_SETTINGS["maxNewTokens"]),
        cwd=repo, env={**env, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout)["findings"]


def as_the_cli_says(finding: dict[str, Any]) -> tuple[int, int, set[str]]:
    """(0-based line, 0-based column, texts) where and what an editor shows for a finding
    of :func:`cli_findings`: the text ``hunkwise review`` prints, or, while its comment is
    still being generated, the same finding's text without the comment and evidence."""
    evidence = tuple(Evidence(**item) for item in finding["evidence"])
    fields = {key: finding[key] for key in Finding.__dataclass_fields__ if key != "evidence"}
    printed = Finding(**fields, evidence=evidence)
    # Before its comment (and the evidence, which comes with it) the score's message.
    pending = Finding(**{**fields, "comment": None})
    return printed.start_line - 1, finding_column(printed) - 1, {printed.text, pending.text}
