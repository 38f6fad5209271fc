"""How useful is the evidence index, and how fast?

On a mined dataset (``hunkwise mine REPO --out DATA``):

- **usefulness**: for the test split's truly fixed hunks (rnp "yes"), how often the top-3
  evidence (from the train split's index, as a bundle stores it) holds a fix of the same
  file, and of the same function (the hunk header's context);
- **a nearest-neighbour vote** (the similarity-weighted share of "yes" among a hunk's
  nearest train hunks, all labels): its ROC AUC on test alone, LApredict's (the served
  score on histories whose adapter adds nothing), and both stacked (a logistic
  regression fitted on valid), with bootstrap 95% intervals and the paired difference;
- **speed**: retrieval per hunk against an index of ``--index-size`` items (the train
  split's evidence repeated with renamed identifiers to reach that size).

Usage: python bench/evidence_bench.py DATA [--index-size 100000] [--queries 500]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.calibration import size_model_for, yes_labels
from training.evidence import EvidenceIndex, evidence_usefulness
from training.mining.dataset import read_split
from training.tasks import LABEL_YES, RNP, Record


def vote_scores(train: list[Record], queries: list[Record], k: int) -> np.ndarray:
    """Similarity-weighted share of "yes" among each query's k nearest train hunks."""
    everything = EvidenceIndex.from_records(train, dedupe=False)
    labels = np.array(yes_labels(train), dtype=float)
    sims = everything.similarities([(r.input, r.meta.path) for r in queries])
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    weights = np.take_along_axis(sims, top, axis=1)
    votes = (weights * labels[top]).sum(axis=1)
    prior = labels.mean()
    # Smoothed toward the base rate where the neighbours are barely similar.
    return (votes + prior) / (weights.sum(axis=1) + 1.0)


def ablation(train, valid, test, k: int) -> dict:
    size = size_model_for(train)
    features = {}
    for name, split in (("valid", valid), ("test", test)):
        features[name] = np.column_stack(
            [size.logits([r.input for r in split]), _logit(vote_scores(train, split, k))]
        )
    y_valid, y_test = np.array(yes_labels(valid)), np.array(yes_labels(test))
    stacked = LogisticRegression(class_weight="balanced").fit(features["valid"], y_valid)
    scores = {
        "lapredict": features["test"][:, 0],
        "vote": features["test"][:, 1],
        "lapredict+vote": stacked.decision_function(features["test"]),
    }
    intervals = _bootstrap(y_test, list(scores.values()))
    out = {
        name: {"auc": round(float(roc_auc_score(y_test, score)), 4), "ci95": interval}
        for (name, score), interval in zip(scores.items(), intervals, strict=True)
    }
    pair = [scores["lapredict+vote"], scores["lapredict"]]
    out["stacked_minus_lapredict_ci95"] = _bootstrap(y_test, pair, paired=True)[0]
    return out


def _bootstrap(y, scores, rounds: int = 1000, seed: int = 0, paired: bool = False) -> list:
    """95% intervals of each score's ROC AUC over the same resamples; ``paired``: of the
    first score's AUC minus the second's."""
    rng = np.random.default_rng(seed)
    values: list[list[float]] = [[] for _ in scores]
    for _ in range(rounds):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        aucs = [roc_auc_score(y[i], s[i]) for s in scores]
        if paired:
            values[0].append(aucs[0] - aucs[1])
        else:
            for slot, auc in zip(values, aucs, strict=True):
                slot.append(auc)
    kept = values[:1] if paired else values
    return [[round(float(np.percentile(v, q)), 4) for q in (2.5, 97.5)] for v in kept]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _rename(rng: random.Random, suffix: str, match: re.Match) -> str:
    return match.group(1) + suffix if rng.random() < 0.3 else match.group(1)


def speed(train: list[Record], size: int, queries: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    base = [r for r in train if r.output == LABEL_YES] or train
    grown = []
    word = re.compile(r"\b([a-z_]{4,})\b")
    while len(grown) < size:
        record = rng.choice(base)
        text = word.sub(partial(_rename, rng, f"_{len(grown)}"), record.input)
        grown.append(Record.make(RNP, text, LABEL_YES, record.meta))
    started = time.perf_counter()
    index = EvidenceIndex.build(grown)
    built = time.perf_counter() - started
    probes = [(r.input, r.meta.path) for r in rng.sample(train, min(queries, len(train)))]
    index.neighbours(probes[:5])  # warm
    started = time.perf_counter()
    for probe in probes:
        index.neighbours([probe])
    one = (time.perf_counter() - started) / len(probes)
    started = time.perf_counter()
    index.neighbours(probes)
    batched = (time.perf_counter() - started) / len(probes)
    return {
        "index_items": len(index),
        "terms": len(index.vocabulary),
        "build_s": round(built, 2),
        "ms_per_hunk_one_at_a_time": round(one * 1000, 3),
        "ms_per_hunk_batched": round(batched * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--index-size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=20, help="neighbours of the vote")
    args = parser.parse_args()
    train, valid, test = (read_split(args.data, RNP, s) for s in ("train", "valid", "test"))
    index = EvidenceIndex.build(train)
    result = {
        "data": str(args.data),
        "index_items": len(index) if index else 0,
        "usefulness": asdict(evidence_usefulness(index, test)) if index else None,
        "vote_ablation": ablation(train, valid, test, args.k),
        "speed": speed(train, args.index_size, args.queries),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
