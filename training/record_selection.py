"""Which records a training run learns from: the newest of each task's train and valid
splits (rnp balanced by label where asked), the mix stage 0 learns the format from, the
held-out part of stage-1 data; and what the manifest and ``--resume`` say about them
(counts, tasks skipped and why, a digest).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import HunkwiseError
from training.mining.dataset import read_split
from training.options import TrainOptions
from training.tasks import LABEL_YES, RNP, Record


def newest(records: list[Record], cap: int | None) -> list[Record]:
    """The newest ``cap`` records (all of them when ``cap`` is 0 or None)."""
    # Splits are written oldest first: the newest records are the most like today's code.
    return records if not cap or len(records) <= cap else records[-cap:]


def balanced_rnp(records: list[Record], ratio: float | None, cap: int | None) -> list[Record]:
    """All "yes" records (the newest, within the cap) and at most ``ratio`` times as many
    "no" ones, the newest first; the result keeps the split's time order."""
    if ratio is None:
        return newest(records, cap)
    yes = [record for record in records if record.output == LABEL_YES]
    no = [record for record in records if record.output != LABEL_YES]
    if not yes:
        return newest(records, cap)
    if cap:
        yes = newest(yes, max(1, math.ceil(cap / (1 + ratio))))
    no_cap = math.ceil(ratio * len(yes))
    if cap:
        no_cap = min(no_cap, cap - len(yes))
    keep = {id(record) for record in yes} | {id(record) for record in no[len(no) - no_cap :]}
    return [record for record in records if id(record) in keep]


def _digest(records: Mapping[str, list[Record]]) -> str:
    digest = hashlib.sha256()
    for task in sorted(records):
        digest.update(task.encode())
        for record in records[task]:
            digest.update(record.id.encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TrainingRecords:
    """The train and valid records of each task of one run (both keyed by task, in the
    order the run asked for the tasks)."""

    train: dict[str, list[Record]]
    valid: dict[str, list[Record]]

    def skipped_tasks(self) -> dict[str, str]:
        """Why each task that cannot be trained is skipped (the bundle records it)."""
        skipped = {task: "no train records" for task, records in self.train.items() if not records}
        rnp = self.train.get(RNP)
        if rnp and all(record.output != LABEL_YES for record in rnp):
            skipped[RNP] = (
                f"no labelled fixes in this history: all {len(rnp)} labelled hunks are "
                '"no", and a model cannot learn what needs review from them'
            )
        return skipped

    def only(self, tasks: Sequence[str]) -> TrainingRecords:
        return TrainingRecords(
            train={task: self.train[task] for task in tasks},
            valid={task: self.valid[task] for task in tasks},
        )

    def counts(self, task: str) -> dict[str, Any]:
        """A task's records as the manifest counts them (rnp with its train labels)."""
        train = self.train[task]
        counts: dict[str, Any] = {"train": len(train), "valid": len(self.valid[task])}
        if task == RNP:
            labels = Counter(record.output for record in train)
            counts["train_labels"] = dict(sorted(labels.items()))
        return counts

    def digest(self) -> str:
        """A hash of every record id by task and split: ``--resume`` refuses other data."""
        return _digest(self.train) + _digest(self.valid)

    def mixed(self, cap: int | None) -> tuple[list[Record], list[Record]]:
        """Every task's train and valid records in one set each, as stage 0 learns the
        format from them: rnp, which trains its adapter on every labelled hunk, gives as
        many as the other tasks (half "yes" where it can)."""
        train = [
            record
            for task, records in self.train.items()
            for record in (balanced_rnp(records, 1.0, cap) if task == RNP else records)
        ]
        valid = [record for records in self.valid.values() for record in records]
        return train, valid


def read_training_records(data_dir: Path, options: TrainOptions) -> TrainingRecords:
    """The records of ``options.tasks`` in the dataset ``data_dir``: the newest
    ``max_records_per_task`` train records (rnp: every labelled hunk, or balanced by
    ``rnp_negative_ratio``) and the newest ``max_eval_records`` valid ones (resolved
    options)."""
    train: dict[str, list[Record]] = {}
    valid: dict[str, list[Record]] = {}
    for task in options.tasks:
        try:
            records = read_split(data_dir, task, "train")
            if task == RNP:
                train[task] = balanced_rnp(records, options.rnp_negative_ratio, None)
            else:
                train[task] = newest(records, options.max_records_per_task)
            valid[task] = newest(read_split(data_dir, task, "valid"), options.max_eval_records)
        except ValueError as error:
            raise HunkwiseError(f"{error}; re-create the dataset with `hunkwise mine`") from error
    return TrainingRecords(train, valid)


def instruct_split(
    records: list[Record], cap: int | None, max_held: int | None
) -> tuple[list[Record], list[Record]]:
    """Stage-1 data, the first ``cap`` records (0 or None: all), as (train, valid): Alpaca
    data has no split, so a twentieth of it (at most ``max_held``, none under 40 records)
    is held out to pick the best checkpoint."""
    if cap:
        records = records[:cap]
    held = min(len(records) // 20, max_held or 400) if len(records) >= 40 else 0
    return records[held:], records[:held]
