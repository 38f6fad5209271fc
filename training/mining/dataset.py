"""The on-disk dataset layout shared by ``hunkwise mine`` and ``hunkwise import``:
``DIR/<task>/{train,valid,test}.jsonl`` plus ``DIR/stats.json``, split by time."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from training.tasks import RNP, SPLITS, Record, read_jsonl, write_jsonl

#: Fractions of each task's records (oldest first) that go to train, valid, test.
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def dedupe(records: Iterable[Record]) -> tuple[list[Record], int]:
    """Keep the first record of each id; returns the kept ones and how many were dropped."""
    seen: set[str] = set()
    kept: list[Record] = []
    dropped = 0
    for record in records:
        if record.id in seen:
            dropped += 1
            continue
        seen.add(record.id)
        kept.append(record)
    return kept, dropped


def split_by_time(
    records: Sequence[Record], fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
) -> dict[str, list[Record]]:
    """Oldest records to train, then valid, newest to test; never random.

    Records are ordered by ``meta.time`` (records without a time keep their given order,
    before timed ones) and records of one commit never straddle two splits, so nothing
    from the future leaks into training.
    """
    ordered = sorted(enumerate(records), key=lambda pair: (pair[1].meta.time or "", pair[0]))
    groups: list[list[Record]] = []
    last_key: object = object()
    for index, record in ordered:
        key = record.meta.commit if record.meta.commit else ("#", index)
        if key != last_key:
            groups.append([])
            last_key = key
        groups[-1].append(record)
    total = len(records)
    train_end = round(total * fractions[0])
    valid_end = round(total * (fractions[0] + fractions[1]))
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    seen = 0
    for group in groups:
        if seen < train_end:
            name = "train"
        elif seen < valid_end:
            name = "valid"
        else:
            name = "test"
        splits[name].extend(group)
        seen += len(group)
    return splits


def split_counts(splits: dict[str, list[Record]], task: str) -> dict:
    """Counts per split (and per label for rnp) as ``stats.json`` reports them."""
    counts: dict = {}
    for name, records in splits.items():
        entry: dict = {"records": len(records)}
        if task == RNP:
            entry["labels"] = dict(sorted(Counter(r.output for r in records).items()))
        counts[name] = entry
    return counts


def _write_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_dataset(out: Path, tasks: dict[str, dict[str, list[Record]]], stats: dict) -> dict:
    """Write every task's splits and ``stats.json`` (with per-split counts added).

    Each file is written to a temporary name and renamed, so a reader never sees half a
    file. Returns the stats as written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stats = dict(stats)
    stats["splits"] = {}
    for task, splits in sorted(tasks.items()):
        for name in SPLITS:
            records = splits.get(name, [])
            _write_atomically(
                out / task / f"{name}.jsonl", lambda tmp, rs=records: write_jsonl(tmp, rs)
            )
        stats["splits"][task] = split_counts(splits, task)
    _write_atomically(
        out / "stats.json",
        lambda tmp: tmp.write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n"),
    )
    return stats


def read_split(data_dir: Path, task: str, split: str) -> list[Record]:
    """The records of one task and split; an absent file is an empty split."""
    path = Path(data_dir) / task / f"{split}.jsonl"
    if not path.exists():
        return []
    return list(read_jsonl(path))
