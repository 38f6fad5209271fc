"""Hand-made training records for real training runs with the tiny preset: ten records a
task, the training options that keep a run to seconds on a CPU, and a callback that
stands in for Ctrl-C in the middle of a stage."""

from __future__ import annotations

import random
from pathlib import Path

from transformers import TrainerCallback

from tests.model_sizes import SMALL_MODEL
from training.mining.dataset import split_by_time, write_dataset
from training.options import TrainOptions
from training.tasks import ADAPTER_TASKS, CR, RCG, RNP, Record, RecordMeta, cr_input

OPTIONS = TrainOptions(
    epochs=2,
    stage0_epochs=2,
    stage1_epochs=1,
    batch_size=4,
    max_length=256,
    lora_r=4,
    lora_alpha=8,
    tiny_vocab_size=512,
    tiny_config=SMALL_MODEL,
    seed=0,
    device="cpu",
)

NAMES = ["count", "total", "items", "value", "result", "index", "name", "path"]


def make_records(task: str, n: int = 10) -> list[Record]:
    """``n`` records of one task, one commit each, oldest first (8 train, 1 valid, 1 test)."""
    rng = random.Random(task)
    records = []
    for i in range(n):
        old, new = rng.sample(NAMES, 2)
        hunk = (
            f"@@ -{i},2 +{i},2 @@\n def f{i}({old}):\n"
            f"-    return {old} + {i}\n+    return {new} * {i}\n"
        )
        meta = RecordMeta(commit=f"{task}{i:02d}", time=f"2024-01-{i + 1:02d}T00:00:00+00:00")
        if task == RNP:
            records.append(Record.make(task, hunk, "yes" if i % 2 else "no", meta))
        elif task == RCG:
            records.append(Record.make(task, hunk, f"Use {new} instead of {old}.", meta))
        elif task == CR:
            code = cr_input(f"Rename {old} to {new}.", f"x = {old}\n")
            records.append(Record.make(task, code, f"x = {new}\n", meta))
        else:
            records.append(
                Record.make(task, f"x = {old}\n", f"x = {new}\n", meta, f"Rename {old} to {new}")
            )
    return records


def write_records(path: Path, tasks=ADAPTER_TASKS) -> Path:
    write_dataset(path, {task: split_by_time(make_records(task)) for task in tasks}, {})
    return path


class Interrupt(TrainerCallback):
    """Stands in for Ctrl-C (or a lost machine) in the middle of one stage."""

    def __init__(self, stage: str, step: int) -> None:
        self.stage, self.step = stage, step

    def on_step_end(self, args, state, control, **kwargs):
        if Path(args.output_dir).parent.name == self.stage and state.global_step == self.step:
            raise KeyboardInterrupt
