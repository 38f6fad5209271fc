"""The tree stays ruff-clean (lint and format), checked with the project's own config."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_check():
    result = ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```sh\n")[1:3]
    demo, tests = (block.split("\n```")[0].strip() for block in blocks)
    assert "train-from-repo" in demo and "--base tiny" in demo
    ci_lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    # Before it, only the editors' installation (system packages and code-server) and the
    # engine's wheel, which pip then takes instead of building it.
    assert ci_lines == [
        "export HUNKWISE_REQUIRE_EDITORS=1",
        "export HUNKWISE_REQUIRE_ENGINE=1",
        ".ci/install-editors",
        'engine_wheels="$(.ci/install-engine)"',
        'export PIP_FIND_LINKS="${PIP_FIND_LINKS:+$PIP_FIND_LINKS }$engine_wheels"',
        tests,
    ]
