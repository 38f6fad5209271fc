"""Session fixtures: one tiny bundle, really trained once per test run on a generated
repository whose history teaches "debug prints get fixed", shared by every test that
needs a model (engine, review, CLI, language server, editors); and a copy of it without
an rnp adapter."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo
from tests.learnable_repo import build_learnable_repo


@dataclass(frozen=True)
class TrainedBundle:
    bundle: Path
    data: Path
    repo: GitRepo


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedBundle:
    """Mine the learnable repository and train a tiny bundle on it (CPU, about a minute)."""
    from training.finetune import TrainOptions, train_bundle
    from training.mining.miner import MineOptions, mine_repository

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("trained")
    repo = build_learnable_repo(root / "learnable")
    data = root / "data"
    mine_repository(repo.path, data, MineOptions())
    bundle = root / "bundle"
    train_bundle(data, "tiny", bundle, TrainOptions(device="cpu", epochs=3, stage0_epochs=6))
    return TrainedBundle(bundle=bundle, data=data, repo=repo)


@pytest.fixture(scope="session")
def tiny_bundle(trained: TrainedBundle) -> Path:
    """The path of the session's trained tiny bundle."""
    return trained.bundle


@pytest.fixture(scope="session")
def no_rnp_bundle(trained: TrainedBundle, tmp_path_factory) -> Path:
    """The session bundle as a history without labelled fixes leaves it: no rnp adapter (nor
    the calibration of its scores), and the trainer's reason recorded in the manifest, as
    ``train_bundle`` records a task without train records."""
    bundle = tmp_path_factory.mktemp("no-rnp") / "bundle"
    shutil.copytree(trained.bundle, bundle)
    shutil.rmtree(bundle / "rnp")
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["tasks"]["rnp"]
    manifest["calibration"] = None
    manifest["training"]["skipped_tasks"] = {"rnp": "no train records"}
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return bundle
