"""Training an adapter bundle with the transformers Trainer and peft.

Stage 0 (``--base tiny`` only): a BPE tokenizer and a small LLaMA built from scratch and
fully trained on every task's records, so it learns the prompt format. Stage 1 (optional):
a LoRA adapter on Alpaca-style instruction data, merged into the base afterwards. Stage 2:
one LoRA adapter per task (rnp, rcg, cr, edit) on that base. Each stage is a
:class:`Stage` description, and one runner trains any of them.

Every stage checkpoints into a work directory beside the bundle; ``resume`` reuses the
finished stages and continues the running one from its last checkpoint. The same code runs
under ``torchrun`` / ``accelerate launch``: every process trains, only the main one writes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from training.bundle import (
    STAGE1,
    StageResult,
    bundle_writer,
    copy_adapter,
    ensure_replaceable,
    training_manifest,
    write_manifest,
)
from training.data import encode_dataset, make_collator, read_instruct_data
from training.errors import HunkwiseError
from training.mining.dataset import read_split
from training.models import (
    TINY,
    base_model_name,
    build_tiny_model,
    build_tiny_tokenizer,
    check_base,
    load_base,
    quiet_libraries,
)
from training.options import TrainOptions, lora_config
from training.record_selection import TrainingRecords, instruct_split, read_training_records
from training.rnp import (
    LeftPaddingCollator,
    class_weights,
    label_token_ids,
    pair_loss,
    rnp_prompt_tokens,
)
from training.tasks import RCG, RNP, Record, render_example

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import TrainerCallback

STAGE0 = "stage0"
_STATS = "stats.json"
_FINAL = "final"
_RUN = "run.json"


def default_work_dir(out: Path) -> Path:
    """Checkpoints of a run that writes ``out``: a hidden sibling, never inside a repo's tree
    unless the bundle itself is."""
    out = Path(out).expanduser().absolute()
    return out.parent / f".{out.name}.work"


# --- the stages as data ------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One Trainer run of a bundle: what it learns from, what it starts from, how fast and
    how long, and what it saves. :func:`_run_stage` trains any of them."""

    #: Its work subdirectory, its progress bar, and its entry in ``training.stages``.
    name: str
    #: How messages call it ("stage 0", "stage 1", "rnp").
    label: str
    #: What it does, for the message that starts it.
    doing: str
    train: tuple[Record, ...]
    valid: tuple[Record, ...]
    learning_rate: float
    epochs: float
    #: What it starts from: a base (hub id, local directory, or stage 0's model), or None:
    #: the tiny model, built from scratch with a tokenizer trained on its records.
    base: str | None
    #: A LoRA adapter merged into the base first (stage 1, under the task adapters).
    merged: Path | None = None
    #: "model": the whole model and its tokenizer (stage 0, the bundle's ``base/``);
    #: "adapter": a LoRA adapter on the base (the bundle's directory of that name).
    saves: Literal["model", "adapter"] = "adapter"
    #: rnp: trained as the engine scores it (training.rnp), not on the next-token loss.
    classifier: bool = False
    #: Seeded with ``options.seed`` before its model is made. Stage 1 is not: its adapter
    #: starts from the random state the run is in (after stage 0, for the tiny base).
    seeded: bool = True


def _stages(
    base: str,
    records: TrainingRecords,
    options: TrainOptions,
    work: Path,
    console: Console | None,
) -> list[Stage]:
    """The stages of a run, in order: stage 0 for the tiny base, stage 1 when there is
    instruction data (read here, its bad rows logged to ``console``), one per task."""
    stages: list[Stage] = []
    # Where the adapters start: stage 0's model, or the base as the manifest names it.
    start = str(work / STAGE0 / _FINAL) if base == TINY else base_model_name(base)
    if base == TINY:
        train, valid = records.mixed(options.max_records_per_task)
        stages.append(
            Stage(
                name=STAGE0,
                label="stage 0",
                doing="training the tiny base",
                train=tuple(train),
                valid=tuple(valid),
                learning_rate=options.stage0_learning_rate,
                epochs=options.stage0_epochs,
                base=None,
                saves="model",
            )
        )
    merged = None
    if options.stage1_data is not None:
        instructions = read_instruct_data(options.stage1_data, console)
        train, valid = instruct_split(
            instructions, options.max_records_per_task, options.max_eval_records
        )
        stages.append(
            Stage(
                name=STAGE1,
                label="stage 1",
                doing="instruction tuning",
                train=tuple(train),
                valid=tuple(valid),
                learning_rate=options.learning_rate,
                epochs=options.stage1_epochs,
                base=start,
                seeded=False,
            )
        )
        merged = work / STAGE1 / _FINAL
    for task, train in records.train.items():
        stages.append(
            Stage(
                name=task,
                label=task,
                doing="training a LoRA adapter",
                train=tuple(train),
                valid=tuple(records.valid[task]),
                learning_rate=options.learning_rate,
                epochs=options.epochs or 1.0,
                base=start,
                merged=merged,
                classifier=task == RNP,
            )
        )
    return stages


# --- the run's processes and what every stage shares -------------------------------------


class _Dist:
    """The process group as the launcher (torchrun / accelerate launch) set it up, or one
    process. Barriers keep the main process's writes ahead of the others' reads."""

    def __init__(self, use_cpu: bool) -> None:
        from datetime import timedelta

        from accelerate import PartialState

        # The other processes wait at a barrier while the main one encodes a dataset or
        # writes the bundle, its evidence and calibration: longer than NCCL's default 10
        # minutes on a large history.
        self.state = PartialState(cpu=use_cpu, timeout=timedelta(hours=2))

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


@dataclass(frozen=True)
class _Run:
    """What every stage of one ``train_bundle`` call shares."""

    work: Path
    options: TrainOptions
    dist: _Dist
    console: Console | None
    callbacks: Sequence[TrainerCallback]

    def say(self, message: str) -> None:
        if self.console is not None and self.dist.is_main:
            self.console.print(message)


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


# --- one stage ---------------------------------------------------------------------------


def _run_stage(stage: Stage, run: _Run) -> StageResult:
    """Train ``stage`` (or reuse it, finished in an interrupted run) into its work dir."""
    from peft import get_peft_model
    from transformers import set_seed

    stage_dir = run.work / stage.name
    done = _finished(stage_dir)
    if done is not None:
        what = "the tiny base from" if stage.saves == "model" else "the adapter in"
        run.say(f"[dim]{stage.label}: reusing {what} {stage_dir / _FINAL}[/]")
        return done
    if stage.base is None:
        model, tokenizer = _tiny_base(stage, stage_dir, run)
    else:
        run.say(f"{stage.label}: {stage.doing} on {len(stage.train)} records")
        if stage.seeded:
            set_seed(run.options.seed)
        model, tokenizer = _load_base(stage.base, stage.merged, run.dist)
    max_length = _max_length(run.options, model)
    if stage.saves == "adapter":
        model = get_peft_model(model, lora_config(run.options))
    return _fit(stage, model, tokenizer, max_length, run)


def _tiny_base(stage: Stage, stage_dir: Path, run: _Run):
    """The tiny model and its tokenizer, trained on the stage's records by one process
    (the others load it, so all share one vocabulary)."""
    from transformers import AutoTokenizer, set_seed

    options, dist = run.options, run.dist
    tokenizer_dir = stage_dir / "tokenizer"
    if dist.is_main and not (options.resume and (tokenizer_dir / "tokenizer.json").is_file()):
        run.say(f"{stage.label}: building the tiny tokenizer from the training records")
        texts = (render_example(r.instruction, r.input, r.output, "") for r in stage.train)
        tokenizer = build_tiny_tokenizer(texts, vocab_size=options.tiny_vocab_size)
        stage_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(str(tokenizer_dir))
    dist.barrier()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if stage.seeded:
        set_seed(options.seed)
    model = build_tiny_model(tokenizer, **options.tiny_config)
    tasks = len({record.task for record in stage.train})
    run.say(
        f"{stage.label}: {stage.doing} ({model.num_parameters() / 1e6:.1f} M parameters) "
        f"on {len(stage.train)} records of {tasks} tasks"
    )
    return model, tokenizer


def _load_base(base: str, merged: Path | None, dist: _Dist):
    """A base loaded fresh (so no adapter leaks into the next stage), with the adapter
    ``merged`` merged in when there is one."""
    model, tokenizer = load_base(base, device=dist.device)
    if merged is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(merged)).merge_and_unload()
    return model, tokenizer


def _max_length(options: TrainOptions, model) -> int:
    assert options.max_length is not None
    limit = getattr(model.config, "max_position_embeddings", None)
    return min(options.max_length, limit) if limit else options.max_length


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


def _fit(stage: Stage, model, tokenizer, max_length: int, run: _Run) -> StageResult:
    """One Trainer run of ``stage`` on ``model``; its result in ``<stage dir>/final``."""
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    options, dist = run.options, run.dist
    stage_dir = run.work / stage.name
    classifier = label_token_ids(tokenizer) if stage.classifier else None
    started = time.monotonic()
    # Tokenised once into the stage's cache (reused by --resume): by the main process
    # first, the others then map its files.
    encoded = stage_dir / "encoded"
    if not dist.is_main:
        dist.barrier()
    # The rnp adapter trains as a classifier on prompts cut as the engine cuts them.
    budget = rnp_prompt_tokens(options.rnp_prompt_tokens, max_length) if classifier else None
    train, encoding = encode_dataset(
        stage.train, tokenizer, max_length, encoded, prompt_budget=budget
    )
    valid, _ = encode_dataset(stage.valid, tokenizer, max_length, encoded, prompt_budget=budget)
    if dist.is_main:
        dist.barrier()
    if not train:
        raise HunkwiseError(
            f"{stage.name}: none of its {len(stage.train)} records fits in --max-length "
            f"{max_length}; raise --max-length"
        )
    on_cuda = dist.device.startswith("cuda")
    packed = on_cuda if options.packing is None else options.packing
    per_step = options.batch_size * options.grad_accum * dist.world_size
    steps_per_epoch = max(1, math.ceil(len(train) / per_step))
    total = options.max_steps or max(1, math.ceil(stage.epochs * steps_per_epoch))
    interval = min(steps_per_epoch, total)
    has_eval = bool(valid)
    checkpoints = stage_dir / "checkpoints"
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
        learning_rate=stage.learning_rate,
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
    progress = _progress_callback(run.console, stage.name)
    extra: dict[str, Any] = {"data_collator": make_collator(tokenizer, packed)}
    if classifier:
        extra = {
            "data_collator": LeftPaddingCollator(tokenizer),
            "compute_loss_func": pair_loss(
                *classifier, class_weights(row[0] for row in train["labels"])
            ),
        }
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=valid if has_eval else None,
        callbacks=[progress, *run.callbacks],
        **extra,
    )
    if classifier:
        # transformers 5 counts a causal LM's loss items (num_items_in_batch, summed over
        # accumulation and processes) over labels[..., 1:], for the next-token shift. An rnp
        # label is one class per hunk, not shifted: every one counts (otherwise a batch of
        # one divides the loss by zero, and a batch of B is weighed B / (B - 1)).
        trainer._loss_shifts_labels = False
    # Progress is the rich bar; stdout stays clean for --json.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        progress.stack.close()

    final = stage_dir / _FINAL
    staging = stage_dir / f".{_FINAL}.tmp"
    if dist.is_main and staging.exists():
        shutil.rmtree(staging)
    dist.barrier()
    trainer.save_model(str(staging))
    log = trainer.state.log_history
    losses = _history(log, "loss")
    evals = _history(log, "eval_loss")
    result = StageResult(
        name=stage.name,
        train_records=len(stage.train),
        valid_records=len(stage.valid),
        steps=trainer.state.global_step,
        train_loss=losses[-1][1] if losses else None,
        eval_loss=round(float(trainer.state.best_metric), 5)
        if trainer.state.best_metric is not None
        else None,
        seconds=round(time.monotonic() - started, 1),
        loss_history=losses,
        eval_loss_history=evals,
        encoding=encoding.to_dict(),
        max_length=max_length,
    )
    if dist.is_main:
        # A bundle holds safetensors and JSON only: no pickled TrainingArguments, no card.
        for name in ("training_args.bin", "README.md"):
            (staging / name).unlink(missing_ok=True)
        if stage.saves == "model":
            tokenizer.save_pretrained(str(staging))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        # Written last: its presence marks the stage finished for --resume.
        _write_json(stage_dir / _STATS, result.to_dict())
        shutil.rmtree(checkpoints, ignore_errors=True)
    dist.barrier()
    return result


# --- the run -----------------------------------------------------------------------------


def _prepare_work(
    work: Path, marker_data: dict[str, Any], options: TrainOptions, dist: _Dist
) -> None:
    """Start a fresh work dir, or check that the one to resume belongs to the same run."""
    if dist.is_main:
        marker = work / _RUN
        if options.resume and marker.is_file():
            try:
                previous = json.loads(marker.read_text(encoding="utf-8"))
            except ValueError:
                previous = None
            if previous != marker_data:
                how = "used other data, base or options; repeat it with the same arguments"
                if (
                    isinstance(previous, dict)
                    and {**previous, "world_size": dist.world_size} == marker_data
                ):
                    # Its checkpoints count steps of another effective batch size.
                    processes = previous["world_size"]
                    how = (
                        f"ran on {processes} processes and this run on {dist.world_size}; "
                        f"launch it on {processes} again"
                    )
                raise HunkwiseError(
                    f"cannot resume: the interrupted run in {work} {how}, or leave out "
                    "--resume to start over"
                )
        else:
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            _write_json(marker, marker_data)
    dist.barrier()


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
    from training.models import resolve_device
    from training.progress import expect_bars

    started = time.monotonic()
    data_dir = Path(data_dir)
    out = Path(out).expanduser().absolute()
    device = resolve_device(options.device)
    options = options.resolved(device)
    options.validate()
    if not data_dir.is_dir():
        raise HunkwiseError(
            f"no dataset at {data_dir}; create one with `hunkwise mine REPO --out {data_dir}`"
        )
    ensure_replaceable(out)
    check_base(base)

    dist = _Dist(use_cpu=device == "cpu")
    records = read_training_records(data_dir, options)
    skipped = records.skipped_tasks()
    work = Path(options.work_dir).absolute() if options.work_dir else default_work_dir(out)
    run = _Run(work, options, dist, console, callbacks)
    for task, reason in skipped.items():
        run.say(f"[yellow]{task}: not trained: {reason} (in {data_dir / task})[/]")
    tasks = [task for task in options.tasks if task not in skipped]
    if not tasks:
        raise HunkwiseError(
            f"no train records for {', '.join(options.tasks)} in {data_dir}; mine a repository "
            "with more history (`hunkwise mine`) or import a dataset (`hunkwise import`)"
        )
    records = records.only(tasks)

    base_model = base_model_name(base)
    marker = {
        "base": base_model,
        "data": str(data_dir.resolve()),
        "records": records.digest(),
        "tasks": tasks,
        "options": options.fingerprint(),
        "world_size": dist.world_size,
    }
    stages = _stages(base, records, options, work, console if dist.is_main else None)
    _prepare_work(work, marker, options, dist)

    # One bar per stage, and the rnp calibration's after them.
    expect_bars(len(stages) + (RNP in tasks))
    try:
        with quiet_libraries(deprecations=".*is_gradient_checkpointing.*"):
            results = [_run_stage(stage, run) for stage in stages]
    except KeyboardInterrupt:
        run.say(
            f"[yellow]interrupted: checkpoints are in {work}; run the same command with "
            "--resume to continue[/]"
        )
        raise
    seconds = round(time.monotonic() - started, 1)
    manifest = training_manifest(
        base,
        base_model,
        data_dir,
        options,
        results,
        tasks=tasks,
        records={task: records.counts(task) for task in tasks},
        skipped=skipped,
        device=dist.device,
        world_size=dist.world_size,
        seconds=seconds,
    )
    if dist.is_main:
        with bundle_writer(out) as staging:
            for stage in stages:
                final = work / stage.name / _FINAL
                if stage.saves == "model":
                    shutil.copytree(final, staging / "base")
                else:
                    copy_adapter(final, staging / stage.name, manifest.base_model)
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
