"""The VS Code extension from pytest: its node tests (`npm test` in editors/vscode: unit
tests of the extension's own logic, and the wiring test that starts the real server the
way the extension does) with a bundle and this interpreter, and its contributed settings
checked against the server's."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from server.settings import Settings
from training.config import KEYS

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = ROOT / "editors" / "vscode"


def _node_modules_missing() -> str | None:
    if shutil.which("npm") is None:
        return "npm is not installed"
    if not (EXTENSION / "node_modules").is_dir():
        return "editors/vscode has no node_modules: run `npm ci` there (.ci/run does)"
    return None


@pytest.mark.slow
def test_extension_node_tests(tiny_bundle: Path):
    missing = _node_modules_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    env = {
        **os.environ,
        "HUNKWISE_TEST_BUNDLE": str(tiny_bundle),
        "HUNKWISE_PYTHON": sys.executable,
    }
    finished = subprocess.run(
        ["npm", "test"], cwd=EXTENSION, env=env, capture_output=True, text=True, timeout=300
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-6000:]
    counts = dict(re.findall(r"^# (pass|fail|skipped) (\d+)$", finished.stdout, re.M))
    assert counts.get("fail") == "0", output[-6000:]
    assert counts.get("skipped") == "0", "the wiring test was skipped:\n" + output[-3000:]
    assert int(counts.get("pass", 0)) > 20


def _camel_to_snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def test_contributed_settings_match_the_server():
    """package.json contributes each server setting under its own name, with the
    server's default (an empty bundle means the server's default location)."""
    manifest = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
    properties = manifest["contributes"]["configuration"]["properties"]
    defaults = {field.name: field.default for field in dataclasses.fields(Settings)}
    defaults["exclude"] = ()
    for key in KEYS:
        contributed = properties[f"hunkwise.{key}"]["default"]
        expected = defaults[_camel_to_snake(key)]
        if key == "bundle":
            assert contributed == "" and expected is None
        elif key == "exclude":
            assert contributed == list(expected)
        else:
            assert contributed == expected, key
    server_keys = {name for name in properties if name.removeprefix("hunkwise.") in KEYS}
    assert len(server_keys) == len(KEYS)
