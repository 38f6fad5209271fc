"""The ``hunkwise`` command as a user runs it, for the tests of the command line: this
interpreter in a subprocess, its output captured as text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: ``hunkwise`` without an installed entry point: the same main, run by this interpreter.
HUNKWISE = (sys.executable, "-c", "from training.cli import main; main()")


def hunkwise(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``hunkwise ARGS`` in ``cwd`` with ``env`` (this process's when None)."""
    return subprocess.run(
        [*HUNKWISE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
