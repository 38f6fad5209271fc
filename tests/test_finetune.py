"""Real training runs on hand-made records with the tiny preset: stage 0, stage 1 and the
stage-2 adapters end in a bundle whose adapters load with peft; an interrupted run resumes;
the command line; two CPU processes under torchrun."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rich.console import Console
from transformers import TrainerCallback

from tests.training_records import OPTIONS, Interrupt, make_records, write_records
from training.bundle import BundleError, read_manifest
from training.cli import main
from training.errors import HunkwiseError
from training.finetune import Stage, _stages, default_work_dir, train_bundle
from training.mining.dataset import split_by_time, write_dataset
from training.options import TrainOptions
from training.record_selection import balanced_rnp, read_training_records
from training.tasks import ADAPTER_TASKS, EDIT, RCG, RNP, Record, RecordMeta

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class StepRecorder(TrainerCallback):
    """Which stage ran which optimizer steps (a stage is named by its work subdirectory)."""

    def __init__(self) -> None:
        self.steps: dict[str, list[int]] = {}

    def on_step_end(self, args, state, control, **kwargs):
        stage = Path(args.output_dir).parent.name
        self.steps.setdefault(stage, []).append(state.global_step)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_records(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, data_dir):
    """One full run: stage 0, stage 1 (Code-Alpaca style JSON), four adapters."""
    root = tmp_path_factory.mktemp("run")
    alpaca = root / "code_alpaca.json"
    alpaca.write_text(
        json.dumps(
            [
                {"instruction": f"Add {i} to x.", "input": "x = 1", "output": f"x = 1 + {i}"}
                for i in range(8)
            ]
        )
    )
    out = root / "bundle"
    log = io.StringIO()
    options = TrainOptions(**{**OPTIONS.__dict__, "stage1_data": alpaca})
    result = train_bundle(data_dir, "tiny", out, options, console=Console(file=log, width=150))
    return result, log.getvalue()


def test_train_bundle_writes_a_complete_bundle(full_run):
    bundle, _ = full_run
    manifest = read_manifest(bundle)
    assert manifest.base_model == "bundle:base"
    assert manifest.stage1 == "stage1"
    assert manifest.tasks == {task: task for task in ADAPTER_TASKS}
    assert (bundle / "base" / "model.safetensors").is_file()
    assert (bundle / "base" / "tokenizer.json").is_file()
    assert not [p for p in bundle.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert not default_work_dir(bundle).exists()
    assert sorted(p.name for p in bundle.parent.iterdir()) == ["bundle", "code_alpaca.json"]
    training = manifest.training
    assert training["records"] == {
        **{task: {"train": 8, "valid": 1} for task in ADAPTER_TASKS},
        RNP: {"train": 8, "valid": 1, "train_labels": {"no": 4, "yes": 4}},
    }
    assert training["options"]["max_records_per_task"] == 600  # the CPU default
    assert training["options"]["learning_rate"] == 3e-4
    assert training["options"]["lora_r"] == 4
    assert training["max_prompt_tokens"] < training["max_length"] == 256
    assert training["rnp_prompt_tokens"] == 160  # the CPU default, under max_prompt_tokens
    # The served score is calibrated on the (whole) valid split.
    assert manifest.calibration is not None
    assert manifest.calibration["fitted_on"]["records"] == 1
    assert set(training["stages"]) == {"stage0", "stage1", *ADAPTER_TASKS}
    assert training["stages"]["stage0"]["train_records"] == 32
    for task in ADAPTER_TASKS:
        history = training["loss_history"][task]
        assert [step for step, _ in history] == [1, 2, 3, 4]
        assert all(loss > 0 for _, loss in history)
        assert [step for step, _ in training["eval_loss_history"][task]] == [2, 4]
        assert training["stages"][task]["steps"] == 4
        config = json.loads((bundle / task / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "bundle:base"
        assert config["r"] == 4


def test_adapters_load_with_peft(full_run):
    from peft import PeftModel

    from training.data import encode_prompt
    from training.models import load_base

    bundle, _ = full_run
    manifest = read_manifest(bundle)
    model, tokenizer = load_base(manifest.base_model, device="cpu", bundle=bundle)
    model = PeftModel.from_pretrained(model, str(bundle / "stage1")).merge_and_unload()
    ids = torch.tensor([encode_prompt(tokenizer, "Review this.", "@@ -1 +1 @@\n-a\n+b", 200)])
    with torch.no_grad():
        plain = model(ids).logits
    tasks = list(manifest.tasks)
    model = PeftModel.from_pretrained(model, str(bundle / tasks[0]), adapter_name=tasks[0])
    for task in tasks[1:]:
        model.load_adapter(str(bundle / task), adapter_name=task)
    assert set(model.peft_config) == set(ADAPTER_TASKS)
    outputs = {}
    with torch.no_grad():
        for task in tasks:
            model.set_adapter(task)
            outputs[task] = model(ids).logits
    # Trained adapters change the base's output, each in its own way.
    assert not torch.allclose(outputs["rnp"], plain)
    assert not torch.allclose(outputs["rnp"], outputs["rcg"])


def test_train_bundle_prints_a_summary(full_run):
    _, log = full_run
    assert "hunkwise train" in log and "best eval loss" in log
    for stage in ("stage0", "stage1", *ADAPTER_TASKS):
        assert stage in log


def test_an_interrupted_run_resumes(tmp_path):
    data = write_records(tmp_path / "data", tasks=(RNP, RCG))
    out = tmp_path / "bundle"
    options = TrainOptions(**{**OPTIONS.__dict__, "tasks": (RNP, RCG, EDIT)})
    with pytest.raises(KeyboardInterrupt):
        train_bundle(data, "tiny", out, options, callbacks=[Interrupt(RCG, 3)])
    assert not out.exists()
    work = default_work_dir(out)
    assert (work / "stage0" / "stats.json").is_file() and (work / RNP / "stats.json").is_file()
    assert (work / RCG / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()

    recorder = StepRecorder()
    log = io.StringIO()
    resumed = TrainOptions(**{**options.__dict__, "resume": True})
    train_bundle(
        data, "tiny", out, resumed, console=Console(file=log, width=150), callbacks=[recorder]
    )
    # Finished stages are reused; the interrupted one continues after its checkpoint.
    assert recorder.steps == {RCG: [3, 4]}
    manifest = read_manifest(out)
    assert manifest.tasks == {RNP: RNP, RCG: RCG}
    assert manifest.training["skipped_tasks"] == {EDIT: "no train records"}
    assert [step for step, _ in manifest.training["loss_history"][RCG]] == [1, 2, 3, 4]
    assert (
        "edit: not trained: no train records" in log.getvalue() and "rnp (reused)" in log.getvalue()
    )
    assert not work.exists()


def test_rnp_training_records_are_balanced():
    records = [
        Record.make(
            RNP, f"@@ -{i} +{i} @@\n+x = {i}\n", "yes" if i % 5 == 0 else "no", RecordMeta()
        )
        for i in range(100)
    ]
    balanced = balanced_rnp(records, ratio=1.0, cap=None)
    labels = [record.output for record in balanced]
    assert labels.count("yes") == 20 and labels.count("no") == 20
    assert balanced == [record for record in records if record in balanced]  # time order kept
    assert balanced[-1] is records[-1]  # the newest "no" records are the ones kept
    capped = [record.output for record in balanced_rnp(records, ratio=3.0, cap=20)]
    assert capped.count("yes") == 5 and capped.count("no") == 15
    assert balanced_rnp(records, ratio=None, cap=10) == records[-10:]


def test_a_run_is_described_by_its_stages(tmp_path, data_dir):
    alpaca = tmp_path / "code_alpaca.json"
    rows = [{"instruction": f"Add {i}.", "input": "x", "output": f"x + {i}"} for i in range(50)]
    alpaca.write_text(json.dumps(rows))
    options = TrainOptions(**{**OPTIONS.__dict__, "stage1_data": alpaca}).resolved("cpu")
    records = read_training_records(data_dir, options)
    work = tmp_path / "work"
    stage0, stage1, *adapters = _stages("tiny", records, options, work, None)
    # Stage 0 builds the tiny base from scratch on every task's records and saves all of it.
    assert (stage0.name, stage0.base, stage0.saves, stage0.seeded) == (
        "stage0",
        None,
        "model",
        True,
    )
    assert len(stage0.train) == 4 * 8 and len(stage0.valid) == 4
    assert (stage0.learning_rate, stage0.epochs) == (1e-3, 2)
    # Stage 1 trains an adapter on that base, holding out a twentieth of its data, unseeded.
    tiny_base = str(work / "stage0" / "final")
    assert (stage1.name, stage1.base, stage1.merged, stage1.saves) == (
        "stage1",
        tiny_base,
        None,
        "adapter",
    )
    assert (len(stage1.train), len(stage1.valid), stage1.seeded) == (48, 2, False)
    assert stage1.epochs == 1 and not stage1.classifier
    # One adapter per task on the base with stage 1 merged in; rnp trained as a classifier.
    assert [stage.name for stage in adapters] == list(ADAPTER_TASKS)
    for stage in adapters:
        assert (stage.base, stage.merged, stage.saves) == (
            tiny_base,
            work / "stage1" / "final",
            "adapter",
        )
        assert stage.classifier == (stage.name == RNP) and stage.seeded
        assert stage.train == tuple(records.train[stage.name]) and stage.epochs == 2
    # A real base: no stage 0, and every adapter starts from the base as the manifest names it.
    plain = TrainOptions(**{**OPTIONS.__dict__, "tasks": (RCG,)}).resolved("cpu")
    (only,) = _stages("./models/base", read_training_records(data_dir, plain), plain, work, None)
    assert isinstance(only, Stage) and only.name == RCG and only.merged is None
    assert only.base == str(Path("./models/base").resolve())


def test_a_history_without_labelled_fixes_trains_no_rnp_adapter_and_says_why(tmp_path):
    records = {task: split_by_time(make_records(task)) for task in (RNP, RCG)}
    records[RNP] = {
        split: [Record.make(RNP, r.input, "no", r.meta) for r in rows]
        for split, rows in records[RNP].items()
    }
    data = tmp_path / "data"
    write_dataset(data, records, {})
    log = io.StringIO()
    options = TrainOptions(**{**OPTIONS.__dict__, "tasks": (RNP, RCG), "stage0_epochs": 1})
    out = train_bundle(data, "tiny", tmp_path / "b", options, console=Console(file=log, width=200))
    manifest = read_manifest(out)
    assert list(manifest.tasks) == [RCG] and manifest.calibration is None
    reason = manifest.training["skipped_tasks"][RNP]
    assert "no labelled fixes" in reason and '8 labelled hunks are "no"' in reason
    assert "rnp: not trained: no labelled fixes" in " ".join(log.getvalue().split())


def test_rnp_classifier_pieces():
    import torch

    from training.models import build_tiny_tokenizer
    from training.rnp import LeftPaddingCollator, class_weights, pair_loss

    assert class_weights([0, 0, 0, 1]) == (4 / 6, 2.0)
    assert class_weights([0, 0]) == (1.0, 1.0)
    tokenizer = build_tiny_tokenizer(["def f():\n    return 1\n"] * 4, vocab_size=300)
    pad = tokenizer.pad_token_id
    batch = LeftPaddingCollator(tokenizer)(
        [{"input_ids": [5, 6, 7], "labels": [1]}, {"input_ids": [8], "labels": [0]}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [pad, pad, 8]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0] and batch["logits_to_keep"] == 1

    class Out:
        logits = torch.tensor([[[0.0, 0.0, 2.0, 0.0]], [[0.0, 0.0, 0.0, 2.0]]])

    # yes = token 2, no = token 3: both rows are right, the yes row weighs 3 times more.
    loss = pair_loss(2, 3, (1.0, 3.0))(Out, torch.tensor([1, 0]))
    expected = (3.0 + 1.0) * torch.nn.functional.softplus(torch.tensor(-2.0)) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_resume_refuses_a_different_run(tmp_path, data_dir):
    out = tmp_path / "bundle"
    work = default_work_dir(out)
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"base": "something else"}))
    resumed = TrainOptions(**{**OPTIONS.__dict__, "resume": True})
    with pytest.raises(HunkwiseError, match=r"cannot resume.*leave out --resume"):
        train_bundle(data_dir, "tiny", out, resumed)


def test_train_bundle_user_errors(tmp_path, data_dir):
    with pytest.raises(HunkwiseError, match="hunkwise mine"):
        train_bundle(tmp_path / "missing", "tiny", tmp_path / "b", OPTIONS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(HunkwiseError, match="no train records"):
        train_bundle(tmp_path / "empty", "tiny", tmp_path / "b", OPTIONS)
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "main.py").write_text("x = 1\n")
    with pytest.raises(BundleError, match="not a hunkwise bundle"):
        train_bundle(data_dir, "tiny", precious, OPTIONS)
    with pytest.raises(HunkwiseError, match="unknown task"):
        train_bundle(data_dir, "tiny", tmp_path / "b", TrainOptions(tasks=("lint",)))
    with pytest.raises(HunkwiseError, match="no such directory"):
        train_bundle(data_dir, "./no/such/model", tmp_path / "b", OPTIONS)


def test_cli_train_json(tmp_path, data_dir):
    out = tmp_path / "bundle"
    args = ["train", "--data", str(data_dir), "--base", "tiny", "--out", str(out)]
    args += ["--tasks", "rnp", "--max-steps", "1", "--max-length", "128", "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["bundle"] == str(out.absolute())
    assert document["tasks"] == {"rnp": "rnp"}
    assert document["training"]["stages"]["rnp"]["steps"] == 1
    read_manifest(out)


def test_cli_train_errors(tmp_path):
    result = CliRunner().invoke(
        main, ["train", "--data", str(tmp_path / "no"), "--base", "tiny", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "hunkwise: error: no dataset at" in result.stderr
    result = CliRunner().invoke(
        main, ["train", "--data", str(tmp_path), "--base", "tiny", "--out", "b", "--tasks", "x"]
    )
    assert result.exit_code == 2 and "unknown task(s) x" in result.stderr


@pytest.mark.slow
def test_two_processes_under_torchrun(tmp_path):
    data = write_records(tmp_path / "data", tasks=(RNP,))
    out = tmp_path / "bundle"
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            sys.path.insert(0, {str(ROOT)!r})
            from tests.training_records import OPTIONS
            from training.finetune import train_bundle
            from training.options import TrainOptions
            options = TrainOptions(**{{**OPTIONS.__dict__, "tasks": ("rnp",), "batch_size": 2}})
            train_bundle(Path({str(data)!r}), "tiny", Path({str(out)!r}), options)
            """
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", "2", str(script)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = read_manifest(out)
    assert manifest.training["world_size"] == 2
    # 8 records, 2 per device and step, 2 devices: 2 steps per epoch, 2 epochs.
    assert manifest.training["stages"]["rnp"]["steps"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "data", "train.py"]
