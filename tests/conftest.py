"""Session fixtures: one tiny bundle, really trained once per test run on a generated
repository whose history teaches "debug prints get fixed", shared by every test that
needs a model (engine, review, CLI, language server, editors); a copy of it without an
rnp adapter; an untrained stand-in bundle for the tests that need a model but not a
trained one; and torch on one thread for the modules that train."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.learnable_repo import TrainedBundle, train_on_learnable_repo

#: A tiny bundle trained beforehand as ``trained`` trains one (into root/bundle, with
#: root/learnable and root/data), served instead of the session's: a test that needs only
#: the bundle (editors, language server, CLI) then runs alone without training.
READY_BUNDLE = "HUNKWISE_TEST_BUNDLE"


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> TrainedBundle:
    """Mine the learnable repository and train a tiny bundle on it (CPU, about a minute).
    Tests read it; one that writes into the bundle copies it first."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return train_on_learnable_repo(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    """The path of the session's trained tiny bundle, or $HUNKWISE_TEST_BUNDLE when set."""
    if os.environ.get(READY_BUNDLE):
        return Path(os.environ[READY_BUNDLE])
    return request.getfixturevalue("trained").bundle


@pytest.fixture(scope="session")
def no_rnp_bundle(tiny_bundle: Path, tmp_path_factory) -> Path:
    """The session bundle as a history without labelled fixes leaves it: no rnp adapter (nor
    the calibration of its scores), and the trainer's reason recorded in the manifest, as
    ``train_bundle`` records a task without train records."""
    bundle = tmp_path_factory.mktemp("no-rnp") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    shutil.rmtree(bundle / "rnp")
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    del manifest["tasks"]["rnp"]
    manifest["calibration"] = None
    manifest["training"]["skipped_tasks"] = {"rnp": "no train records"}
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return bundle


@pytest.fixture(scope="session")
def stand_in_bundle(tmp_path_factory) -> Path:
    """An untrained STAND-IN bundle (tests/untrained_bundle.py), with stage 1; read only."""
    from tests.untrained_bundle import build_stand_in_bundle  # torch, only when needed

    return build_stand_in_bundle(tmp_path_factory.mktemp("stand-in-bundle"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module: tiny matrices on a shared two-core machine train
    faster on one thread than on two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
