"""Benchmark: ``hunkwise train-from-repo --base tiny`` on a real history with the CPU
defaults: wall time per phase, the report's RNP table on the whole test split, and an
ablation of the served score (adapter only, size only, both), each fitted on the valid
split and judged on the test split with bootstrap 95% intervals.

    python bench/train_bench.py /path/to/flask-clone [--keep DIR]

Get a real history first, e.g. ``git clone https://github.com/pallets/flask``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.calibration import (  # noqa: E402
    FEATURES,
    fit_calibration,
    sigmoid,
    size_model_for,
    yes_labels,
)
from training.metrics import bootstrap_aucs, interval95, roc_auc  # noqa: E402


def _train(repo: Path, out: Path, device: str) -> tuple[dict, float]:
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from training.cli import main; main()",
            "train-from-repo",
            str(repo),
            "--base",
            "tiny",
            "--out",
            str(out),
            "--device",
            device,
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=ROOT,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout), wall


def _ablation(bundle: Path, data: Path, device: str) -> list[tuple[str, float, tuple]]:
    """ROC AUC on test of the stacker fitted on valid with each feature set."""
    from training.engine import Engine
    from training.mining.dataset import read_split

    engine = Engine.load(bundle, device=device)
    valid, test = (read_split(data, "rnp", split) for split in ("valid", "test"))
    logits = {
        name: engine.logits([r.input for r in rows])
        for name, rows in (("valid", valid), ("test", test))
    }
    labels = {name: yes_labels(rows) for name, rows in (("valid", valid), ("test", test))}
    texts = {name: [r.input for r in rows] for name, rows in (("valid", valid), ("test", test))}
    size_model = size_model_for(read_split(data, "rnp", "train"))
    scores = {"adapter alone (sigmoid of its logit)": sigmoid(logits["test"])}
    for name, features in (
        ("adapter, calibrated", FEATURES[:1]),
        ("size only (stacker without the adapter)", FEATURES[1:]),
        ("adapter + size (served)", FEATURES),
    ):
        calibration = fit_calibration(
            logits["valid"],
            texts["valid"],
            labels["valid"],
            size_model=size_model,
            features=features,
        )
        scores[name] = np.asarray(calibration.probabilities(logits["test"], texts["test"]))
    y = np.asarray(labels["test"])
    samples = bootstrap_aucs(y, scores, 1000, 0)
    return [(name, roc_auc(y, s), interval95(samples[name][0])) for name, s in scores.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keep", type=Path, help="Write the bundle here and keep it.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = (args.keep or Path(tmp) / "bundle").absolute()
        summary, wall = _train(args.repo, out, args.device)
        manifest = json.loads((out / "manifest.json").read_text())
        ablation = _ablation(out, Path(summary["data"]), args.device)
    stats = summary["mined"]
    metrics = summary["metrics"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, device {args.device}, load {os.getloadavg()[0]:.1f}"
    )
    print(f"history: {stats['commits']} commits, {sum(stats['records'].values())} records")
    print(
        f"train-from-repo wall time: {wall:.0f} s (mining {stats['seconds']['total']:.1f} s, "
        f"training {manifest['training'].get('seconds', 0):.0f} s)"
    )
    for name, stage in manifest["training"].get("stages", {}).items():
        print(
            f"  {name}: {stage['train_records']} records, {stage['steps']} steps, "
            f"{stage['seconds']:.0f} s"
        )
    rnp = metrics.get("rnp")
    if rnp:
        base_rate = rnp["test_yes"] / rnp["test_records"]
        print(
            f"RNP on the whole test split: {rnp['test_records']} hunks, {rnp['test_yes']} yes "
            f"(base rate {base_rate:.3f})"
        )
        print("  scorer: ROC AUC [95% CI] | PR AUC | threshold | flagged | precision | recall")
        for name, scorer in rnp["scorers"].items():
            m = scorer["metrics"]
            ci = scorer["roc_auc_ci"]
            auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            print(
                f"  {name:<10} {auc} {ci} | {scorer['pr_auc'] or 0:.3f} | {m['threshold']:.3f} "
                f"| {scorer['flagged_share']:.3f} | {m['precision']:.3f} | {m['recall']:.3f}"
            )
        for d in rnp["differences"]:
            print(f"  {d['first']} - {d['second']}: {d['difference']:+.3f} {d['ci']}")
        served = rnp["scorers"]["served"]
        print(
            f"  served precision / base rate at the default threshold: "
            f"{served['metrics']['precision'] / base_rate:.2f}x"
        )
    print("ablation (fitted on valid, ROC AUC on test [95% CI]):")
    for name, auc, ci in ablation:
        print(f"  {name:<42} {auc:.3f} {ci}")
    for task in ("rcg", "cr", "edit"):
        if metrics.get(task):
            m = metrics[task]
            print(f"{task}: BLEU-4 {m['bleu4']}, EM {m['exact_match']} on {m['records']} records")


if __name__ == "__main__":
    main()
