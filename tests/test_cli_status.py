"""``hunkwise bundles`` and ``hunkwise status``: what is in the cache, and what a review
here would use and why. Through the real CLI, with the session's trained bundle copied to
where a clone of its history looks for it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from tests.hunkwise_command import hunkwise
from tests.learnable_repo import TrainedBundle
from training.bundle import default_bundle_dir

HEAVY = ("torch", "transformers", "peft", "datasets")


@pytest.fixture(scope="module")
def cached(trained: TrainedBundle, tmp_path_factory) -> tuple[Path, dict]:
    """A clone of the learnt history, and a cache dir holding its bundle."""
    import os

    root = tmp_path_factory.mktemp("status")
    env = {**os.environ, "XDG_CACHE_HOME": str(root / "cache")}
    clone = root / "clone"
    subprocess.run(
        ["git", "clone", "-q", str(trained.repo.path), str(clone)], check=True, env=trained.repo.env
    )
    with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": env["XDG_CACHE_HOME"]}):
        target = default_bundle_dir(clone)
    assert target.parent == root / "cache" / "hunkwise"
    shutil.copytree(trained.bundle, target)
    return clone, env


def where(clone: Path, env: dict) -> Path:
    import os

    with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": env["XDG_CACHE_HOME"]}):
        return default_bundle_dir(clone)


def test_bundles_lists_the_cache(cached, trained: TrainedBundle) -> None:
    clone, env = cached
    result = hunkwise("bundles", "--json", env=env)
    assert result.returncode == 0, result.stderr
    [bundle] = json.loads(result.stdout)
    assert bundle["path"] == str(where(clone, env))
    assert bundle["base"] == "tiny" and "rnp" in bundle["tasks"]
    assert bundle["history"] == "learnable" and bundle["size_bytes"] > 100_000
    assert bundle["evidence_items"] > 0
    text = hunkwise("bundles", env=env).stdout
    assert text.startswith(str(where(clone, env))) and "learnable · base tiny" in text


def test_status_says_what_a_review_would_use_and_why(cached) -> None:
    clone, env = cached
    result = hunkwise("status", "--json", env=env, cwd=clone / "app")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["repository"] == str(clone)
    assert report["bundle"] == str(where(clone, env))
    assert "root commit" in report["bundle_reason"]
    assert report["threshold_reason"].startswith("the bundle's")
    assert report["device"] == "cpu" and report["torch"].startswith("2.")
    (clone / "hunkwise.toml").write_text('threshold = 0.3\ndevice = "cpu"\n')
    try:
        report = json.loads(hunkwise("status", "--json", env=env, cwd=clone).stdout)
        assert report["threshold"] == 0.3 and report["threshold_reason"].endswith("hunkwise.toml")
        assert report["settings"] == {"threshold": 0.3, "device": "cpu"}
    finally:
        (clone / "hunkwise.toml").unlink()
    missing = json.loads(
        hunkwise("status", "--json", "--bundle", str(clone / "nope"), env=env, cwd=clone).stdout
    )
    assert (
        missing["bundle_reason"] == "--bundle" and "no hunkwise bundle" in missing["bundle_problem"]
    )


def test_bundles_imports_no_model_library(cached) -> None:
    _, env = cached
    code = (
        "import sys\nfrom training.cli import main\n"
        "try:\n    main(['bundles'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
