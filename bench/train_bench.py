"""Benchmark: ``hunkwise train-from-repo --base tiny`` on a real history with the default
CPU caps: wall time per phase and the report's RNP numbers beside its baselines.

    python bench/train_bench.py /path/to/flask-clone

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle"
        start = time.perf_counter()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "from training.cli import main; main()",
                "train-from-repo",
                str(args.repo),
                "--base",
                "tiny",
                "--out",
                str(out),
                "--device",
                args.device,
                "--json",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(result.stderr[-3000:])
        summary = json.loads(result.stdout)
        manifest = json.loads((out / "manifest.json").read_text())
    stats = summary["mined"]
    metrics = summary["metrics"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, device {args.device}"
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
        print(f"RNP on {rnp['test_records']} test hunks (precision / recall / F1 / AUC):")
        for name in ("model", "majority", "lapredict"):
            m = rnp[name]
            auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            print(f"  {name:<10} {m['precision']:.3f} / {m['recall']:.3f} / {m['f1']:.3f} / {auc}")
    for task in ("rcg", "cr", "edit"):
        if metrics.get(task):
            m = metrics[task]
            print(f"{task}: BLEU-4 {m['bleu4']}, EM {m['exact_match']} on {m['records']} records")


if __name__ == "__main__":
    main()
