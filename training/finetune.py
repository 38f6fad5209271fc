"""Training an adapter bundle with the transformers Trainer and peft.

Stage 0 (``--base tiny`` only): a BPE tokenizer and a small LLaMA built from scratch and
fully trained on every task's records, so it learns the prompt format. Stage 1 (optional):
a LoRA adapter on Alpaca-style instruction data, merged into the base afterwards. Stage 2:
one LoRA adapter per task (rnp, rcg, cr, edit) on that base.

Every stage checkpoints into a work directory beside the bundle; ``resume`` reuses the
finished stages and continues the running one from its last checkpoint. The same code runs
under ``torchrun`` / ``accelerate launch``: every process trains, only the main one writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.bundle import (
    BUNDLE_BASE,
    Manifest,
    bundle_writer,
    ensure_replaceable,
    write_manifest,
)
from training.data import encode_dataset, make_collator, read_instruct_data
from training.errors import HunkwiseError
from training.mining.dataset import read_split
from training.models import (
    TINY,
    build_tiny_model,
    build_tiny_tokenizer,
    check_base,
    is_local_path,
    load_base,
)
from training.rnp import (
    LeftPaddingCollator,
    class_weights,
    label_token_ids,
    pair_loss,
    prompt_budget,
    rnp_prompt_tokens,
)
from training.tasks import ADAPTER_TASKS, LABEL_YES, RCG, RNP, TEMPLATE_NAME, Record, render_example

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import TrainerCallback

STAGE0 = "stage0"
STAGE1 = "stage1"
_STATS = "stats.json"
_FINAL = "final"
_RUN = "run.json"


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

    def fingerprint(self) -> dict[str, Any]:
        """What must match for ``resume`` to continue a run (not device, resume, work_dir)."""
        data = dataclasses.asdict(self)
        for key in ("resume", "device", "work_dir"):
            data.pop(key)
        return json.loads(json.dumps(data, default=str))

    def hyper_parameters(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def default_work_dir(out: Path) -> Path:
    """Checkpoints of a run that writes ``out``: a hidden sibling, never inside a repo's tree
    unless the bundle itself is."""
    out = Path(out).expanduser().absolute()
    return out.parent / f".{out.name}.work"


# --- stage bookkeeping -------------------------------------------------------------------


@dataclass
class StageResult:
    """What one stage (stage0, stage1, or a task's adapter) did."""

    name: str
    train_records: int
    valid_records: int
    steps: int
    train_loss: float | None
    eval_loss: float | None
    seconds: float
    loss_history: list[list[float]] = field(default_factory=list)
    eval_loss_history: list[list[float]] = field(default_factory=list)
    encoding: dict[str, int] = field(default_factory=dict)
    max_length: int = 0
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("reused")
        return data


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _finished(stage_dir: Path) -> StageResult | None:
    """The result of a stage finished in an earlier (interrupted) run, if any."""
    stats, final = stage_dir / _STATS, stage_dir / _FINAL
    if not (stats.is_file() and final.is_dir()):
        return None
    try:
        data = json.loads(stats.read_text(encoding="utf-8"))
        return StageResult(**data, reused=True)
    except (ValueError, TypeError):
        return None


class _Dist:
    """The process group as the launcher (torchrun / accelerate launch) set it up, or one
    process. Barriers keep the main process's writes ahead of the others' reads."""

    def __init__(self, use_cpu: bool) -> None:
        from accelerate import PartialState

        self.state = PartialState(cpu=use_cpu)

    @property
    def is_main(self) -> bool:
        return self.state.is_main_process

    @property
    def world_size(self) -> int:
        return self.state.num_processes

    @property
    def device(self) -> str:
        """``cpu``, ``mps``, or this process's ``cuda:N``."""
        device = self.state.device
        if device.type == "cuda" and device.index is not None:
            return f"cuda:{device.index}"
        return device.type

    def barrier(self) -> None:
        self.state.wait_for_everyone()


# --- progress ----------------------------------------------------------------------------


def _progress_callback(console: Console | None, description: str):
    from transformers import TrainerCallback

    from training.progress import progress_bar

    class RichProgress(TrainerCallback):
        """A rich bar over optimizer steps (replaces the Trainer's tqdm and log printing),
        and JSON progress lines with the latest loss under ``--progress json``."""

        def __init__(self) -> None:
            self.stack = ExitStack()
            self.advance: Callable[..., None] | None = None
            self.done = 0
            self.loss: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.advance = self.stack.enter_context(
                    progress_bar(console, description, state.max_steps)
                )
                self.done = 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and isinstance(logs.get("loss"), int | float):
                self.loss = float(logs["loss"])

        def on_step_end(self, args, state, control, **kwargs):
            if self.advance is not None and state.global_step > self.done:
                self.advance(state.global_step - self.done, loss=self.loss)
                self.done = state.global_step

        def on_train_end(self, args, state, control, **kwargs):
            self.stack.close()
            self.advance = None

    return RichProgress()


def _say(console: Console | None, dist: _Dist, message: str) -> None:
    if console is not None and dist.is_main:
        console.print(message)


# --- one Trainer run ---------------------------------------------------------------------


@dataclass
class _Fit:
    """Everything one Trainer run needs."""

    name: str
    stage_dir: Path
    model: Any
    tokenizer: Any
    train: list[Record]
    valid: list[Record]
    learning_rate: float
    epochs: float
    max_length: int
    full_model: bool = False
    #: rnp: the ("yes", "no") label token ids; the adapter is then trained as the engine
    #: scores (training.rnp), not on the generic next-token loss.
    classifier: tuple[int, int] | None = None


def _last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint that was written to the end (its trainer_state.json exists)."""
    if not checkpoints.is_dir():
        return None
    found = []
    for entry in checkpoints.iterdir():
        step = entry.name.removeprefix("checkpoint-")
        if entry.name != step and step.isdigit() and (entry / "trainer_state.json").is_file():
            found.append((int(step), entry))
    return str(max(found)[1]) if found else None


def _history(log_history: list[dict], key: str) -> list[list[float]]:
    return [[entry["step"], round(float(entry[key]), 5)] for entry in log_history if key in entry]


def _fit(
    fit: _Fit,
    options: TrainOptions,
    dist: _Dist,
    console: Console | None,
    callbacks: Sequence[TrainerCallback],
) -> StageResult:
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    started = time.monotonic()
    # Tokenised once into the stage's cache (reused by --resume): by the main process
    # first, the others then map its files.
    encoded = fit.stage_dir / "encoded"
    if not dist.is_main:
        dist.barrier()
    # The rnp adapter trains as a classifier on prompts cut as the engine cuts them.
    budget = (
        rnp_prompt_tokens(options.rnp_prompt_tokens, fit.max_length) if fit.classifier else None
    )
    train, encoding = encode_dataset(
        fit.train, fit.tokenizer, fit.max_length, encoded, prompt_budget=budget
    )
    valid, _ = encode_dataset(
        fit.valid, fit.tokenizer, fit.max_length, encoded, prompt_budget=budget
    )
    if dist.is_main:
        dist.barrier()
    if not train:
        raise HunkwiseError(
            f"{fit.name}: none of its {len(fit.train)} records fits in --max-length "
            f"{fit.max_length}; raise --max-length"
        )
    on_cuda = dist.device.startswith("cuda")
    packed = on_cuda if options.packing is None else options.packing
    per_step = options.batch_size * options.grad_accum * dist.world_size
    steps_per_epoch = max(1, math.ceil(len(train) / per_step))
    total = options.max_steps or max(1, math.ceil(fit.epochs * steps_per_epoch))
    interval = min(steps_per_epoch, total)
    has_eval = bool(valid)
    checkpoints = fit.stage_dir / "checkpoints"
    resume_from = _last_complete_checkpoint(checkpoints) if options.resume else None
    if dist.is_main:
        if not resume_from and checkpoints.exists():
            shutil.rmtree(checkpoints)
        elif resume_from:
            # A checkpoint cut short by the interruption cannot be resumed from.
            for entry in checkpoints.iterdir():
                if entry.is_dir() and not (entry / "trainer_state.json").is_file():
                    shutil.rmtree(entry, ignore_errors=True)
    dist.barrier()
    args = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=fit.learning_rate,
        weight_decay=options.weight_decay,
        max_steps=total,
        lr_scheduler_type=options.lr_scheduler,
        # A float below 1 is a fraction of the total steps.
        warmup_steps=float(options.warmup_ratio) if options.warmup_ratio < 1 else 0,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=interval,
        save_strategy="steps",
        save_steps=interval,
        # With load_best_model_at_end the best checkpoint is kept besides the latest.
        save_total_limit=1,
        load_best_model_at_end=has_eval,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=max(1, total // 50),
        logging_first_step=True,
        report_to="none",
        disable_tqdm=True,
        seed=options.seed,
        use_cpu=dist.device == "cpu",
        bf16=on_cuda and torch.cuda.is_bf16_supported(),
        fp16=on_cuda and not torch.cuda.is_bf16_supported(),
        remove_unused_columns=False,
        label_names=["labels"],
        train_sampling_strategy="random" if packed else "group_by_length",
        ddp_find_unused_parameters=False,
        dataloader_num_workers=0,
        activation_checkpointing=options.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False}
        if options.gradient_checkpointing
        else None,
    )
    progress = _progress_callback(console, fit.name)
    extra: dict[str, Any] = {"data_collator": make_collator(fit.tokenizer, packed)}
    if fit.classifier:
        pad = fit.tokenizer.pad_token_id
        extra = {
            "data_collator": LeftPaddingCollator(
                pad if pad is not None else fit.tokenizer.eos_token_id
            ),
            "compute_loss_func": pair_loss(
                *fit.classifier, class_weights(row[0] for row in train["labels"])
            ),
        }
    trainer = Trainer(
        model=fit.model,
        args=args,
        train_dataset=train,
        eval_dataset=valid if has_eval else None,
        callbacks=[progress, *callbacks],
        **extra,
    )
    # Progress is the rich bar; stdout stays clean for --json.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        progress.stack.close()

    final = fit.stage_dir / _FINAL
    staging = fit.stage_dir / f".{_FINAL}.tmp"
    if dist.is_main and staging.exists():
        shutil.rmtree(staging)
    dist.barrier()
    trainer.save_model(str(staging))
    log = trainer.state.log_history
    losses = _history(log, "loss")
    evals = _history(log, "eval_loss")
    result = StageResult(
        name=fit.name,
        train_records=len(fit.train),
        valid_records=len(fit.valid),
        steps=trainer.state.global_step,
        train_loss=losses[-1][1] if losses else None,
        eval_loss=round(float(trainer.state.best_metric), 5)
        if trainer.state.best_metric is not None
        else None,
        seconds=round(time.monotonic() - started, 1),
        loss_history=losses,
        eval_loss_history=evals,
        encoding=encoding.to_dict(),
        max_length=fit.max_length,
    )
    if dist.is_main:
        # A bundle holds safetensors and JSON only: no pickled TrainingArguments, no card.
        for extra in ("training_args.bin", "README.md"):
            (staging / extra).unlink(missing_ok=True)
        if fit.full_model:
            fit.tokenizer.save_pretrained(str(staging))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        # Written last: its presence marks the stage finished for --resume.
        _write_json(fit.stage_dir / _STATS, result.to_dict())
        shutil.rmtree(checkpoints, ignore_errors=True)
    dist.barrier()
    return result


# --- the stages --------------------------------------------------------------------------


def _lora_config(options: TrainOptions):
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


def _stage_base(base_ref: str, stage1_dir: Path | None, dist: _Dist):
    """The base every stage-2 adapter starts from: loaded fresh (so no adapter leaks into
    the next) with the stage-1 adapter merged in when there is one."""
    model, tokenizer = load_base(base_ref, device=dist.device)
    if stage1_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(stage1_dir)).merge_and_unload()
    return model, tokenizer


def _max_length(options: TrainOptions, model) -> int:
    assert options.max_length is not None
    limit = getattr(model.config, "max_position_embeddings", None)
    return min(options.max_length, limit) if limit else options.max_length


def _stage0(
    work: Path,
    train: dict[str, list[Record]],
    valid: dict[str, list[Record]],
    options: TrainOptions,
    dist: _Dist,
    console: Console | None,
    callbacks: Sequence[TrainerCallback],
) -> StageResult:
    from transformers import AutoTokenizer, set_seed

    stage_dir = work / STAGE0
    done = _finished(stage_dir)
    if done is not None:
        _say(console, dist, f"[dim]stage 0: reusing the tiny base from {stage_dir / _FINAL}[/]")
        return done
    # The format is learnt from every task alike: rnp, which trains its adapter on every
    # labelled hunk, gives stage 0 as many as the other tasks (half "yes" where it can).
    all_train = [
        record
        for task, records in train.items()
        for record in (
            _balanced_rnp(records, 1.0, options.max_records_per_task) if task == RNP else records
        )
    ]
    all_valid = [record for records in valid.values() for record in records]
    tokenizer_dir = stage_dir / "tokenizer"
    # One process trains the tokenizer; the others load it, so all share one vocabulary.
    if dist.is_main and not (options.resume and (tokenizer_dir / "tokenizer.json").is_file()):
        _say(console, dist, "stage 0: building the tiny tokenizer from the training records")
        texts = (render_example(r.instruction, r.input, r.output, "") for r in all_train)
        tokenizer = build_tiny_tokenizer(texts, vocab_size=options.tiny_vocab_size)
        stage_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(tokenizer_dir))
    dist.barrier()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    set_seed(options.seed)
    model = build_tiny_model(tokenizer, **options.tiny_config)
    _say(
        console,
        dist,
        f"stage 0: training the tiny base ({model.num_parameters() / 1e6:.1f} M parameters) "
        f"on {len(all_train)} records of {len(train)} tasks",
    )
    fit = _Fit(
        name=STAGE0,
        stage_dir=stage_dir,
        model=model,
        tokenizer=tokenizer,
        train=all_train,
        valid=all_valid,
        learning_rate=options.stage0_learning_rate,
        epochs=options.stage0_epochs,
        max_length=_max_length(options, model),
        full_model=True,
    )
    return _fit(fit, options, dist, console, callbacks)


def _stage1(
    work: Path,
    base_ref: str,
    options: TrainOptions,
    dist: _Dist,
    console: Console | None,
    callbacks: Sequence[TrainerCallback],
) -> StageResult:
    from peft import get_peft_model

    stage_dir = work / STAGE1
    done = _finished(stage_dir)
    if done is not None:
        _say(console, dist, f"[dim]stage 1: reusing the adapter in {stage_dir / _FINAL}[/]")
        return done
    assert options.stage1_data is not None
    records = read_instruct_data(options.stage1_data)
    if options.max_records_per_task:
        records = records[: options.max_records_per_task]
    # Alpaca data has no split: hold out a few records to pick the best checkpoint.
    held = min(len(records) // 20, options.max_eval_records or 400) if len(records) >= 40 else 0
    train, valid = records[held:], records[:held]
    _say(console, dist, f"stage 1: instruction tuning on {len(train)} records")
    model, tokenizer = load_base(base_ref, device=dist.device)
    fit = _Fit(
        name=STAGE1,
        stage_dir=stage_dir,
        model=get_peft_model(model, _lora_config(options)),
        tokenizer=tokenizer,
        train=train,
        valid=valid,
        learning_rate=options.learning_rate,
        epochs=options.stage1_epochs,
        max_length=_max_length(options, model),
    )
    return _fit(fit, options, dist, console, callbacks)


def _stage2(
    work: Path,
    task: str,
    base_ref: str,
    stage1_dir: Path | None,
    train: list[Record],
    valid: list[Record],
    options: TrainOptions,
    dist: _Dist,
    console: Console | None,
    callbacks: Sequence[TrainerCallback],
) -> StageResult:
    from peft import get_peft_model
    from transformers import set_seed

    stage_dir = work / task
    done = _finished(stage_dir)
    if done is not None:
        _say(console, dist, f"[dim]{task}: reusing the adapter in {stage_dir / _FINAL}[/]")
        return done
    _say(console, dist, f"{task}: training a LoRA adapter on {len(train)} records")
    set_seed(options.seed)
    model, tokenizer = _stage_base(base_ref, stage1_dir, dist)
    fit = _Fit(
        name=task,
        stage_dir=stage_dir,
        model=get_peft_model(model, _lora_config(options)),
        tokenizer=tokenizer,
        train=train,
        valid=valid,
        learning_rate=options.learning_rate,
        epochs=options.epochs or 1.0,
        max_length=_max_length(options, model),
        classifier=label_token_ids(tokenizer) if task == RNP else None,
    )
    return _fit(fit, options, dist, console, callbacks)


# --- the run -----------------------------------------------------------------------------


def _newest(records: list[Record], cap: int | None) -> list[Record]:
    # Splits are written oldest first: the newest records are the most like today's code.
    return records if not cap or len(records) <= cap else records[-cap:]


def _balanced_rnp(records: list[Record], ratio: float | None, cap: int | None) -> list[Record]:
    """All "yes" records (the newest, within the cap) and at most ``ratio`` times as many
    "no" ones, the newest first; the result keeps the split's time order."""
    if ratio is None:
        return _newest(records, cap)
    yes = [record for record in records if record.output == LABEL_YES]
    no = [record for record in records if record.output != LABEL_YES]
    if not yes:
        return _newest(records, cap)
    if cap:
        yes = _newest(yes, max(1, math.ceil(cap / (1 + ratio))))
    no_cap = math.ceil(ratio * len(yes))
    if cap:
        no_cap = min(no_cap, cap - len(yes))
    keep = {id(record) for record in yes} | {id(record) for record in no[len(no) - no_cap :]}
    return [record for record in records if id(record) in keep]


def _read_records(
    data_dir: Path, options: TrainOptions
) -> tuple[dict[str, list[Record]], dict[str, list[Record]]]:
    train: dict[str, list[Record]] = {}
    valid: dict[str, list[Record]] = {}
    for task in options.tasks:
        try:
            records = read_split(data_dir, task, "train")
            if task == RNP:
                train[task] = _balanced_rnp(records, options.rnp_negative_ratio, None)
            else:
                train[task] = _newest(records, options.max_records_per_task)
            valid[task] = _newest(read_split(data_dir, task, "valid"), options.max_eval_records)
        except ValueError as error:
            raise HunkwiseError(f"{error}; re-create the dataset with `hunkwise mine`") from error
    return train, valid


def _skipped_tasks(train: dict[str, list[Record]], tasks: Sequence[str]) -> dict[str, str]:
    """Why each task that cannot be trained is skipped (the bundle records it)."""
    skipped = {task: "no train records" for task in tasks if not train[task]}
    if RNP in tasks and train[RNP] and all(r.output != LABEL_YES for r in train[RNP]):
        skipped[RNP] = (
            f"no labelled fixes in this history: all {len(train[RNP])} labelled hunks are "
            '"no", and a model cannot learn what needs review from them'
        )
    return skipped


def _counts(task: str, train: list[Record], valid: list[Record]) -> dict[str, Any]:
    counts: dict[str, Any] = {"train": len(train), "valid": len(valid)}
    if task == RNP:
        counts["train_labels"] = dict(sorted(Counter(record.output for record in train).items()))
    return counts


def _data_digest(records: dict[str, list[Record]]) -> str:
    digest = hashlib.sha256()
    for task in sorted(records):
        digest.update(task.encode())
        for record in records[task]:
            digest.update(record.id.encode())
    return digest.hexdigest()[:16]


def _base_name(base: str) -> str:
    """How the manifest names the base: hub ids as given, local paths made absolute."""
    if base == TINY:
        return BUNDLE_BASE
    if is_local_path(base):
        return str(Path(base).expanduser().resolve())
    return base


def _prepare_work(work: Path, run: dict[str, Any], options: TrainOptions, dist: _Dist) -> None:
    """Start a fresh work dir, or check that the one to resume belongs to the same run."""
    if dist.is_main:
        marker = work / _RUN
        if options.resume and marker.is_file():
            try:
                previous = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                previous = None
            if previous != run:
                raise HunkwiseError(
                    f"cannot resume: the interrupted run in {work} used other data, base or "
                    "options; repeat it with the same arguments, or leave out --resume to "
                    "start over"
                )
        else:
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            _write_json(marker, run)
    dist.barrier()


def _validate(options: TrainOptions) -> None:
    unknown = [task for task in options.tasks if task not in ADAPTER_TASKS]
    if unknown or not options.tasks:
        raise HunkwiseError(
            f"unknown task(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(ADAPTER_TASKS)}"
        )
    checks = {
        "epochs": options.epochs is not None and options.epochs > 0,
        "max_steps": options.max_steps is None or options.max_steps > 0,
        "learning_rate": options.learning_rate > 0,
        "batch_size": options.batch_size > 0,
        "grad_accum": options.grad_accum > 0,
        "max_length": options.max_length is not None and options.max_length >= 64,
        "rnp_negative_ratio": options.rnp_negative_ratio is None or options.rnp_negative_ratio > 0,
        "rnp_prompt_tokens": options.rnp_prompt_tokens is not None
        and (options.rnp_prompt_tokens == 0 or options.rnp_prompt_tokens >= 64),
        "lora_r": options.lora_r > 0,
        "warmup_ratio": 0 <= options.warmup_ratio < 1,
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise HunkwiseError(f"invalid training option(s): {', '.join(bad)}")
    if options.stage1_data is not None and not Path(options.stage1_data).exists():
        raise HunkwiseError(f"stage-1 data {options.stage1_data} does not exist")


def _summary(results: list[StageResult], title: str):
    from rich.table import Table

    table = Table(title=title)
    for column, justify in (
        ("stage", "left"),
        ("train", "right"),
        ("valid", "right"),
        ("steps", "right"),
        ("train loss", "right"),
        ("best eval loss", "right"),
        ("seconds", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for result in results:
        table.add_row(
            result.name + (" (reused)" if result.reused else ""),
            str(result.train_records),
            str(result.valid_records),
            str(result.steps),
            "-" if result.train_loss is None else f"{result.train_loss:.4f}",
            "-" if result.eval_loss is None else f"{result.eval_loss:.4f}",
            f"{result.seconds:.1f}",
        )
    return table


def _calibrate(
    bundle: Path, data_dir: Path, device: str, console: Console | None
) -> dict[str, Any] | None:
    """Score the whole valid split with the bundle's rnp adapter and fit the served score
    and default threshold on it, the size model (LApredict) on the train split
    (:mod:`training.calibration`); None without valid hunks."""
    from training.calibration import fit_calibration, size_model_for, yes_labels
    from training.engine import Engine
    from training.evaluate import rnp_logits

    valid = read_split(data_dir, RNP, "valid")
    if not valid:
        if console is not None:
            console.print(
                "[yellow]rnp: no valid records to calibrate on; the bundle serves the "
                "adapter's own P(yes) at threshold 0.5[/]"
            )
        return None
    engine = Engine.load(bundle, device=device)
    logits = rnp_logits(engine, valid, console, "rnp: calibrating on the valid split")
    size_model = size_model_for(read_split(data_dir, RNP, "train"))
    labels = yes_labels(valid)
    calibration = fit_calibration(logits, [r.input for r in valid], labels, size_model=size_model)
    if console is not None:
        console.print(
            f"rnp: served score calibrated on {len(valid)} valid hunks ({sum(labels)} yes); "
            f"default threshold {calibration.threshold:.3f}"
        )
    return calibration.to_dict()


def _evidence_index(bundle: Path, data_dir: Path, console: Console | None) -> dict[str, Any] | None:
    """Index the train split's fixed hunks and imported review comments into the bundle
    (:mod:`training.evidence`); None when the history has neither."""
    from training.evidence import EvidenceIndex

    started = time.monotonic()
    records = [*read_split(data_dir, RNP, "train"), *read_split(data_dir, RCG, "train")]
    index = EvidenceIndex.build(records)
    if index is None:
        return None
    entry = index.save(bundle)
    if console is not None:
        console.print(
            f"evidence: {len(index)} fixed hunks and review comments indexed "
            f"({time.monotonic() - started:.1f} s)"
        )
    return entry


def _copy_adapter(source: Path, target: Path, base_model: str) -> None:
    shutil.copytree(source, target)
    config = target / "adapter_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    # Not the work dir it was trained against, which is gone after the run.
    data["base_model_name_or_path"] = base_model
    config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _run_stages(
    work: Path,
    base: str,
    base_ref: str,
    tasks: list[str],
    train: dict[str, list[Record]],
    valid: dict[str, list[Record]],
    options: TrainOptions,
    dist: _Dist,
    console: Console | None,
    callbacks: Sequence[TrainerCallback],
) -> list[StageResult]:
    from training.progress import expect_bars

    # One bar per stage, and the rnp calibration's after them.
    expect_bars((base == TINY) + (options.stage1_data is not None) + len(tasks) + (RNP in tasks))
    results: list[StageResult] = []
    if base == TINY:
        results.append(_stage0(work, train, valid, options, dist, console, callbacks))
        base_ref = str(work / STAGE0 / _FINAL)
    stage1_dir = None
    if options.stage1_data is not None:
        results.append(_stage1(work, base_ref, options, dist, console, callbacks))
        stage1_dir = work / STAGE1 / _FINAL
    for task in tasks:
        results.append(
            _stage2(
                work,
                task,
                base_ref,
                stage1_dir,
                train[task],
                valid[task],
                options,
                dist,
                console,
                callbacks,
            )
        )
    return results


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """No per-file tqdm bars from transformers (the rich bar shows progress) and no peft
    deprecation chatter; warnings that matter (missing weights ...) still show."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
            )
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def train_bundle(
    data_dir: Path,
    base: str,
    out: Path,
    options: TrainOptions,
    console: Console | None = None,
    *,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Train the stages and write the bundle ``out`` (atomically); returns ``out``.

    ``data_dir`` is a dataset as ``hunkwise mine`` writes it; ``base`` a hub id, a local
    model directory or ``tiny``. ``callbacks`` are extra ``TrainerCallback`` objects given
    to every stage's Trainer. Tasks without train records are skipped with a message.
    """
    from training import __version__
    from training.models import resolve_device

    started = time.monotonic()
    data_dir = Path(data_dir)
    out = Path(out).expanduser().absolute()
    device = resolve_device(options.device)
    options = options.resolved(device)
    _validate(options)
    if not data_dir.is_dir():
        raise HunkwiseError(
            f"no dataset at {data_dir}; create one with `hunkwise mine REPO --out {data_dir}`"
        )
    ensure_replaceable(out)
    check_base(base)

    dist = _Dist(use_cpu=device == "cpu")
    train, valid = _read_records(data_dir, options)
    skipped = _skipped_tasks(train, options.tasks)
    for task, reason in skipped.items():
        _say(console, dist, f"[yellow]{task}: not trained: {reason} (in {data_dir / task})[/]")
    tasks = [task for task in options.tasks if task not in skipped]
    if not tasks:
        raise HunkwiseError(
            f"no train records for {', '.join(options.tasks)} in {data_dir}; mine a repository "
            "with more history (`hunkwise mine`) or import a dataset (`hunkwise import`)"
        )
    train = {task: train[task] for task in tasks}
    valid = {task: valid[task] for task in tasks}

    work = Path(options.work_dir).absolute() if options.work_dir else default_work_dir(out)
    manifest_base = _base_name(base)
    run = {
        "base": manifest_base,
        "data": str(data_dir.resolve()),
        "records": _data_digest(train) + _data_digest(valid),
        "tasks": tasks,
        "options": options.fingerprint(),
        "world_size": dist.world_size,
    }
    _prepare_work(work, run, options, dist)

    try:
        with _quiet_libraries():
            results = _run_stages(
                work, base, manifest_base, tasks, train, valid, options, dist, console, callbacks
            )
    except KeyboardInterrupt:
        _say(
            console,
            dist,
            f"[yellow]interrupted: checkpoints are in {work}; run the same command with "
            "--resume to continue[/]",
        )
        raise
    stage1_dir = work / STAGE1 / _FINAL if options.stage1_data is not None else None
    seconds = round(time.monotonic() - started, 1)
    adapters = [result for result in results if result.name in tasks]
    max_length = max(result.max_length for result in adapters)
    manifest = Manifest(
        base_model=manifest_base,
        template=TEMPLATE_NAME,
        stage1=STAGE1 if stage1_dir is not None else None,
        tasks={task: task for task in tasks},
        training={
            "hunkwise": __version__,
            "data": str(data_dir.resolve()),
            "base": base,
            "device": dist.device,
            "world_size": dist.world_size,
            "options": options.hyper_parameters(),
            # The lengths training saw; the engine keeps prompts within max_prompt_tokens
            # (training never cut a response below a quarter of max_length).
            "max_length": max_length,
            "max_prompt_tokens": prompt_budget(max_length),
            # What rnp examples were cut to (the engine scores hunks cut the same way).
            "rnp_prompt_tokens": rnp_prompt_tokens(options.rnp_prompt_tokens, max_length),
            "records": {task: _counts(task, train[task], valid[task]) for task in tasks},
            "skipped_tasks": skipped,
            "stages": {result.name: result.to_dict() for result in results},
            "loss_history": {result.name: result.loss_history for result in adapters},
            "eval_loss_history": {result.name: result.eval_loss_history for result in adapters},
            "seconds": seconds,
        },
    )
    if dist.is_main:
        with bundle_writer(out) as staging:
            if base == TINY:
                shutil.copytree(work / STAGE0 / _FINAL, staging / "base")
            if stage1_dir is not None:
                _copy_adapter(stage1_dir, staging / STAGE1, manifest.base_model)
            for task in tasks:
                _copy_adapter(work / task / _FINAL, staging / task, manifest.base_model)
            manifest.evidence = _evidence_index(staging, data_dir, console)
            write_manifest(staging, manifest)
            if RNP in tasks:
                manifest.calibration = _calibrate(staging, data_dir, dist.device, console)
                write_manifest(staging, manifest)
        shutil.rmtree(work, ignore_errors=True)
        if console is not None:
            console.print(_summary(results, f"hunkwise train: {out} ({seconds:.0f} s)"))
    dist.barrier()
    return out
