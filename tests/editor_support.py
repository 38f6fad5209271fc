"""What the editor tests share: a missing editor skips the test with its reason on a
developer's machine, and fails it where the editors are required (``.ci/run`` exports
``HUNKWISE_REQUIRE_EDITORS=1``; ``CI`` set by a CI service counts too)."""

from __future__ import annotations

import os

import pytest

REQUIRE_VARIABLE = "HUNKWISE_REQUIRE_EDITORS"


def editors_required() -> bool:
    return bool(os.environ.get(REQUIRE_VARIABLE) or os.environ.get("CI"))


def missing_editor(reason: str) -> None:
    """Skip (or, where editors are required, fail) the calling test because ``reason``."""
    if editors_required():
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE} is set: the editors are required here)")
    pytest.skip(reason)
