"""Start-up: ``python -m server --version`` and ``--help`` answer at once, and building the
server imports no model library (torch loads with the bundle, in the background)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from training import __version__

ROOT = Path(__file__).resolve().parents[1]


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_version_and_help() -> None:
    assert _python("-m", "server", "--version").stdout.strip() == f"hunkwise-lsp {__version__}"
    usage = _python("-m", "server", "--help").stdout
    assert "--tcp HOST:PORT" in usage and "--log-file" in usage
    bad = _python("-m", "server", "--tcp", "nowhere")
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr


def test_building_the_server_imports_no_model_library() -> None:
    code = (
        "import sys; from server.server import create_server; create_server(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'peft', 'datasets', 'accelerate'}))"
    )
    assert _python("-c", code).stdout.strip() == "[]"
