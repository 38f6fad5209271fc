"""What the editor tests share: a missing editor skips the test with its reason on a
developer's machine, and fails it where the editors are required (``.ci/run`` exports
``HUNKWISE_REQUIRE_EDITORS=1``; ``CI`` set by a CI service counts too); and what
``hunkwise review`` prints for the same change, which every editor must show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


#: The server settings of the editors' tests (editors/neovim/test/init.lua,
#: editors/emacs/test/e2e.el, the VS Code driver): every hunk flagged, 8-token comments.
EDITOR_SETTINGS = {"threshold": 0, "maxNewTokens": 8}


def cli_findings(repo: Path, bundle: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """``hunkwise review --json`` of ``repo``'s uncommitted changes with ``bundle`` and
    the editors' tests' settings (:data:`EDITOR_SETTINGS`)."""
    finished = subprocess.run(
        [sys.executable, "-c", "from training.cli import main; main()", "review",
         "--repo", str(repo), "--bundle", str(bundle), "--device", "cpu", "--json",
         "--exit-zero", "--threshold", str(EDITOR_SETTINGS["threshold"]),
         "--max-new-tokens", str(EDITOR_SETTINGS["maxNewTokens"])],
        cwd=repo, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
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
