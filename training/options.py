"""The options of one training run (:class:`TrainOptions`), their device-dependent defaults
and their checks: the one definition that ``hunkwise train``, ``train-from-repo`` and
:func:`training.finetune.train_bundle` share.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.errors import HunkwiseError
from training.tasks import ADAPTER_TASKS

#: What ``None`` means for the options that depend on where training runs. A GPU gets the
#: papers' settings; a CPU (or MPS) gets a run that finishes in minutes: it proves the
#: pipeline on the tiny preset, not review quality. 0 records means "all of them".
AUTO_DEFAULTS: dict[str, dict[str, Any]] = {
    "gpu": {
        "epochs": 3.0,
        "stage0_epochs": 2.0,
        "max_length": 1024,
        "max_records_per_task": 0,
        "max_eval_records": 400,
        "rnp_prompt_tokens": 0,
    },
    "cpu": {
        "epochs": 1.0,
        "stage0_epochs": 2.0,
        "max_length": 512,
        "max_records_per_task": 600,
        "max_eval_records": 40,
        "rnp_prompt_tokens": 160,
    },
}


@dataclass
class TrainOptions:
    """Hyper-parameters of one ``train_bundle`` run (LLaMA-Reviewer / InstructCoder defaults).

    ``epochs`` apply to each adapter (stage 0 and stage 1 have their own); ``max_steps``,
    when set, caps every stage (stage 0 included) and wins over the epochs.
    ``batch_size`` is per device. Options left ``None`` take their value from
    :data:`AUTO_DEFAULTS` for the device (see :meth:`resolved`).
    """

    tasks: tuple[str, ...] = ADAPTER_TASKS
    epochs: float | None = None
    max_steps: int | None = None
    learning_rate: float = 3e-4
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    #: peft's shorthand for every linear projection (attention and MLP), not the LM head.
    target_modules: str | tuple[str, ...] = "all-linear"
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int | None = None
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    seed: int = 42
    #: Checked by :func:`training.models.resolve_device` (the one device rule).
    device: str = "auto"
    #: Alpaca / Code Alpaca JSON or JSONL (or a ``hunkwise import alpaca`` directory).
    stage1_data: Path | None = None
    stage1_epochs: float = 1.0
    resume: bool = False
    #: The newest N train records of each generating task (0: all), so a CPU run stays in
    #: minutes. The rnp adapter trains on every labelled hunk (see ``rnp_negative_ratio``).
    max_records_per_task: int | None = None
    #: The newest N valid records of each task for the per-epoch evaluation (0: all).
    max_eval_records: int | None = None
    #: At most this many "no" per "yes" among the RNP train records. None (the default):
    #: keep every labelled hunk; the loss weighs both classes equally instead (a history is
    #: mostly "no", and a model trained on that unweighted says "no" to everything).
    rnp_negative_ratio: float | None = None
    #: Prompt tokens of an rnp example (the hunk cut in the middle beyond them), in training
    #: and when the bundle scores; 0: the bundle's prompt budget (3/4 of max_length). The CPU
    #: default keeps one epoch over every labelled hunk of a history like flask in minutes.
    rnp_prompt_tokens: int | None = None
    #: Stage 0 (tiny only): full training of the from-scratch model on all tasks.
    stage0_epochs: float | None = None
    stage0_learning_rate: float = 1e-3
    tiny_vocab_size: int = 4096
    #: ``LlamaConfig`` overrides for the tiny model (see ``training.models.TINY_CONFIG``).
    tiny_config: dict[str, Any] = field(default_factory=dict)
    #: Padding-free packing (position ids): None = on CUDA only.
    packing: bool | None = None
    gradient_checkpointing: bool = False
    #: Where checkpoints go; default ``<out parent>/.<out name>.work``.
    work_dir: Path | None = None

    def resolved(self, device: str) -> TrainOptions:
        """A copy with every ``None`` auto option set for ``device`` (``cuda...`` or not)."""
        profile = AUTO_DEFAULTS["gpu" if device.startswith("cuda") else "cpu"]
        values = {key: value for key, value in profile.items() if getattr(self, key) is None}
        return dataclasses.replace(self, **values)

    def validate(self) -> None:
        """Refuse unknown tasks and values no run can use (of resolved options), naming
        them; and stage-1 data that does not exist."""
        check_tasks(self.tasks)
        checks = {
            "epochs": self.epochs is not None and self.epochs > 0,
            "max_steps": self.max_steps is None or self.max_steps > 0,
            "learning_rate": self.learning_rate > 0,
            "batch_size": self.batch_size > 0,
            "grad_accum": self.grad_accum > 0,
            "max_length": self.max_length is not None and self.max_length >= 64,
            "rnp_negative_ratio": self.rnp_negative_ratio is None or self.rnp_negative_ratio > 0,
            "rnp_prompt_tokens": self.rnp_prompt_tokens is not None
            and (self.rnp_prompt_tokens == 0 or self.rnp_prompt_tokens >= 64),
            "lora_r": self.lora_r > 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise HunkwiseError(f"invalid training option(s): {', '.join(bad)}")
        if self.stage1_data is not None and not Path(self.stage1_data).exists():
            raise HunkwiseError(f"stage-1 data {self.stage1_data} does not exist")

    def fingerprint(self) -> dict[str, Any]:
        """What must match for ``resume`` to continue a run (not device, resume, work_dir)."""
        data = dataclasses.asdict(self)
        for key in ("resume", "device", "work_dir"):
            data.pop(key)
        return json.loads(json.dumps(data, default=str))

    def hyper_parameters(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def check_tasks(tasks: Sequence[str]) -> None:
    """Refuse an empty list of adapters to train, or one naming a task that has none."""
    unknown = [task for task in tasks if task not in ADAPTER_TASKS]
    if unknown or not tasks:
        raise HunkwiseError(
            f"unknown task(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(ADAPTER_TASKS)}"
        )


def lora_config(options: TrainOptions):
    """The peft ``LoraConfig`` of every adapter a run trains (stage 1 and the tasks)."""
    from peft import LoraConfig, TaskType

    target = options.target_modules
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=target if isinstance(target, str) else list(target),
        bias="none",
    )
