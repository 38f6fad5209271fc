"""Evaluating a bundle: its engine runs the adapters on a dataset's test split (rnp
scored on the whole split, comments, refinements and edits generated), and the predictions
are judged (:mod:`training.metrics`) into an :class:`~training.report.EvaluationReport`.

``bleu4`` and ``exact_match`` are importable from here too, as docs/architecture.md §7
names them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from training.calibration import yes_labels
from training.metrics import bleu4, evaluate_generation, evaluate_rnp, exact_match
from training.record_selection import newest
from training.report import EvaluationReport

__all__ = [
    "CPU_EVAL_LIMITS",
    "bleu4",
    "evaluate_bundle",
    "exact_match",
    "rnp_logits",
    "write_predictions",
]

#: Test records evaluated per generating task when no limit is given: all on a GPU; on CPU,
#: the newest of each test split (generation with a CPU model takes a while). Review
#: necessity is one forward pass per hunk: its whole test split is always scored.
CPU_EVAL_LIMITS: dict[str, int] = {"rcg": 60, "cr": 60, "edit": 60}


def write_predictions(path: Path, ids: Sequence[str], served, adapter, labels) -> None:
    """One JSON line per test record: ``id``, ``p`` (the served score), ``p_adapter`` (the
    adapter's own P(yes)) and ``label`` (1 = yes), written atomically."""
    path = Path(path)
    lines = [
        json.dumps({"id": i, "p": round(p, 6), "p_adapter": round(a, 6), "label": y})
        for i, p, a, y in zip(ids, served, adapter, labels, strict=True)
    ]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


def rnp_logits(engine, records, console, description: str) -> list[float]:
    """The rnp adapter's logit for each record's hunk, in batches, with a progress bar."""
    from training.progress import progress_bar

    logits: list[float] = []
    with progress_bar(console, description, len(records)) as advance:
        for start in range(0, len(records), 64):
            batch = records[start : start + 64]
            logits += engine.logits([r.input for r in batch])
            advance(len(batch))
    return logits


def evaluate_bundle(
    bundle: Path,
    data_dir: Path,
    *,
    device: str = "auto",
    limit: int | None = None,
    stopwords: set[str] | None = None,
    threshold: float | None = None,
    predictions: Path | None = None,
    console=None,
) -> EvaluationReport:
    """Run a bundle's adapters on the test split of ``data_dir`` and build the report:
    RNP on the whole test split (the served score at ``threshold``, default the bundle's,
    beside the raw adapter and both baselines), RCG BLEU-4 (with and without
    ``stopwords``), CR and edit BLEU-4 and exact match. ``limit`` caps the test records
    per task, the newest kept (None: all rnp, and for generation all on a GPU or
    :data:`CPU_EVAL_LIMITS` on CPU; 0: all). ``predictions`` gets one JSON line per rnp
    test record (see :func:`write_predictions`)."""
    from training.bundle import read_manifest
    from training.calibration import sigmoid
    from training.engine import Engine, GenerationRequest
    from training.evidence import evidence_usefulness
    from training.mining.dataset import read_split
    from training.progress import expect_bars, progress_bar

    engine = Engine.load(Path(bundle), device=device)
    manifest = read_manifest(Path(bundle))
    on_cpu = engine.info.device == "cpu"
    expect_bars(sum(engine.has_task(task) for task in ("rnp", "rcg", "cr", "edit")))

    def cap(task: str) -> int | None:
        if limit is not None:
            return limit or None
        return CPU_EVAL_LIMITS.get(task) if on_cpu else None

    records: dict[str, dict[str, int]] = {}
    for task in ("rnp", "rcg", "cr", "edit"):
        records[task] = {
            split: len(read_split(data_dir, task, split)) for split in ("train", "valid", "test")
        }
    results: dict[str, object] = {}
    if engine.has_task("rnp"):
        test = newest(read_split(data_dir, "rnp", "test"), cap("rnp"))
        train = read_split(data_dir, "rnp", "train")
        valid = read_split(data_dir, "rnp", "valid")
        if test and train:
            logits = rnp_logits(engine, test, console, "Evaluating rnp")
            adapter = [float(p) for p in sigmoid(logits)]
            calibration = engine.calibration
            served = (
                calibration.probabilities(logits, [r.input for r in test]) if calibration else None
            )
            labels = yes_labels(test)
            results["rnp"] = evaluate_rnp(
                adapter,
                labels,
                [r.input for r in test],
                yes_labels(train),
                [r.input for r in train],
                served_scores=served,
                threshold=engine.default_threshold if threshold is None else threshold,
                valid_labels=yes_labels(valid),
                valid_hunks=[r.input for r in valid],
            )
            if predictions is not None:
                write_predictions(
                    predictions, [r.id for r in test], served or adapter, adapter, labels
                )
    index, _ = engine.evidence_index()
    rnp_test = read_split(data_dir, "rnp", "test")
    if index is not None and any(r.output == "yes" for r in rnp_test):
        results["evidence"] = evidence_usefulness(index, rnp_test)
    for task in ("rcg", "cr", "edit"):
        test = newest(read_split(data_dir, task, "test"), cap(task))
        if not test or not engine.has_task(task):
            continue
        predictions: list[str] = []
        with progress_bar(console, f"Evaluating {task}", len(test)) as advance:
            for start in range(0, len(test), 16):
                batch = test[start : start + 16]
                predictions += engine.generate(
                    [GenerationRequest(task, r.instruction, r.input) for r in batch]
                )
                advance(len(batch))
        results[task] = evaluate_generation(
            predictions, [r.output for r in test], stopwords if task == "rcg" else None
        )
    loss = {
        task: [(int(step), float(value)) for step, value in history]
        for task, history in (manifest.training.get("loss_history") or {}).items()
    }
    return EvaluationReport(**results, records=records, loss=loss)
