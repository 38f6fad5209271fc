"""Training on several processes: the accelerate configs of docs/accelerate load as
`accelerate launch` reads them, and two CPU processes (gloo) launched through the DDP one
train a bundle with the effective batch size of both, written by rank 0 only, and resume
an interrupted run where it stopped."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training_records import OPTIONS, write_records
from training.bundle import read_manifest
from training.errors import HunkwiseError
from training.finetune import default_work_dir, train_bundle
from training.options import TrainOptions
from training.tasks import RNP

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "docs" / "accelerate"

#: One micro-batch of one record a process, two of them per optimizer step, two processes:
#: four records a step. A launcher or Trainer that got the world size or the accumulation
#: wrong would train another number of steps, or see another number of records an epoch.
BATCH_SIZE, GRAD_ACCUM, WORLD_SIZE = 1, 2, 2
RUN_OPTIONS = {
    **OPTIONS.__dict__,
    "tasks": (RNP,),
    "batch_size": BATCH_SIZE,
    "grad_accum": GRAD_ACCUM,
}

#: The script both processes run: train_bundle with RUN_OPTIONS, a callback that prints
#: what each process trained, optionally a Ctrl-C in the middle of a stage; and on rank 1,
#: a record of every file it creates, changes or removes under the run's directory.
SCRIPT = '''
import json, os, sys
from pathlib import Path

rank = int(os.environ["RANK"])
config = json.loads(sys.argv[1])
root = os.path.realpath(config["root"])
writes = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def audit(event, args):
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS
        )
        if not writing:
            return
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
        path = args[0]
    elif event in ("os.rename", "shutil.copyfile", "shutil.copytree"):
        path = args[1]
    else:
        return
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.path.realpath(os.fsdecode(path))
        if path.startswith(root + os.sep):
            writes.append(os.path.relpath(path, root))


if rank != 0:
    sys.addaudithook(audit)

from accelerate import PartialState
from transformers import TrainerCallback

from tests.training_records import Interrupt
from training.finetune import train_bundle
from training.options import TrainOptions


class Probe(TrainerCallback):
    """Per stage and process: micro-batches and optimizer steps trained, the epoch reached."""

    def __init__(self):
        self.micro = 0
        self.steps = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.micro, self.steps = 0, []

    def on_substep_end(self, args, state, control, **kwargs):
        self.micro += 1

    def on_step_end(self, args, state, control, **kwargs):
        self.micro += 1
        self.steps.append(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        dist = PartialState()
        probe = {
            "rank": args.process_index,
            "stage": Path(args.output_dir).parent.name,
            "world_size": dist.num_processes,
            "backend": dist.backend,
            "distributed_type": str(dist.distributed_type),
            "max_steps": state.max_steps,
            "epoch": state.epoch,
            "micro_batches": self.micro,
            "steps": self.steps,
        }
        # One write of the whole line (atomic on a pipe, under PIPE_BUF): print writes the
        # text and the newline apart, and the two ranks' lines could interleave.
        os.write(1, ("PROBE " + json.dumps(probe) + "\\n").encode())


callbacks = [Probe()]
if config["interrupt"]:
    callbacks.append(Interrupt(*config["interrupt"]))
options = TrainOptions(**{**config["options"], "tasks": tuple(config["options"]["tasks"])})
train_bundle(Path(config["data"]), "tiny", Path(config["out"]), options, callbacks=callbacks)
if rank != 0:
    print("WRITES " + json.dumps(sorted(set(writes))), flush=True)
'''


def launch(root: Path, *, resume: bool = False, interrupt: tuple[str, int] | None = None):
    """``accelerate launch`` of SCRIPT with docs/accelerate/ddp.yaml on two CPU processes
    (gloo; the config's bf16 is for GPUs): root/data trained into root/bundle. Returns the
    finished launcher, the probes its processes printed and rank 1's writes."""
    script = root / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    config = {
        "root": str(root),
        "data": str(root / "data"),
        "out": str(root / "bundle"),
        "options": {**RUN_OPTIONS, "resume": resume},
        "interrupt": interrupt,
    }
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    launcher += ["--config_file", str(CONFIGS / "ddp.yaml"), "--num_processes", str(WORLD_SIZE)]
    launcher += ["--mixed_precision", "no", "--main_process_port", "0"]
    distributed = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in distributed and not key.startswith(("ACCELERATE_", "FSDP_"))
    }
    env.update(
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    run = subprocess.run(
        [*launcher, str(script), json.dumps(config)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = run.stdout.splitlines()
    probes = [json.loads(line[len("PROBE ") :]) for line in lines if line.startswith("PROBE ")]
    writes = [json.loads(line[len("WRITES ") :]) for line in lines if line.startswith("WRITES ")]
    return run, probes, writes


def only_in_the_work_dir(path: str) -> bool:
    """Whether a write of a non-main process, relative to the run's directory, is one
    it may make: in the work dir of root/bundle (checkpoint directories, its random state),
    or the probe every process makes and removes at once to check that the bundle's place
    is writable (training.output_dirs.check_writable)."""
    top = Path(path).parts[0]
    return top == default_work_dir(Path("bundle")).name or top.startswith(".hunkwise-probe-")


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One uninterrupted two-process run on the 8 rnp train records (stage 0, then rnp)."""
    root = tmp_path_factory.mktemp("ddp")
    write_records(root / "data", tasks=(RNP,))
    data_files = listing(root / "data")
    run, probes, writes = launch(root)
    assert run.returncode == 0, run.stderr[-4000:]
    return root, data_files, probes, writes


def test_the_accelerate_configs_load_as_accelerate_launch_reads_them():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType
    from accelerate.utils.launch import prepare_multi_gpu_env

    expected = {"ddp": DistributedType.MULTI_GPU, "fsdp": DistributedType.FSDP}
    envs = {}
    for name, distributed_type in expected.items():
        path = CONFIGS / f"{name}.yaml"
        config = load_config_from_file(str(path))  # refuses unknown top-level keys
        assert config.distributed_type == distributed_type
        assert (config.num_processes, config.num_machines, config.mixed_precision) == (
            8,
            1,
            "bf16",
        )
        assert not config.use_cpu
        parser = launch_command_parser()
        # Every fsdp_config key is an `accelerate launch` option (unknown ones are ignored).
        options = {action.dest for action in parser._actions}
        assert set(config.fsdp_config) <= options
        args, _, _ = _validate_launch_command(
            parser.parse_args(["--config_file", str(path), "train.py"])
        )
        assert (args.multi_gpu, args.use_fsdp) == (name == "ddp", name == "fsdp")
        assert args.num_processes == 8
        envs[name] = prepare_multi_gpu_env(args)  # as the launched processes get it
    assert "ACCELERATE_USE_FSDP" not in envs["ddp"]
    env = envs["fsdp"]
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "1"
    assert env["FSDP_SHARDING_STRATEGY"] in ("FULL_SHARD", "SHARD_GRAD_OP")
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    # The layer class is the base's own (_no_split_modules), not one name for every base.
    assert "FSDP_TRANSFORMER_CLS_TO_WRAP" not in env
    assert env["FSDP_USE_ORIG_PARAMS"] == "true"
    # The Trainer's save_model writes an adapter under FSDP with a full state dict only.
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "false"


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_the_fsdp_config_wraps_the_decoder_layers_and_the_lora_layers():
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import FullyShardedDataParallelPlugin, patch_environment
    from accelerate.utils.launch import prepare_multi_gpu_env
    from peft import get_peft_model
    from peft.utils.other import fsdp_auto_wrap_policy
    from torch.distributed.fsdp import ShardingStrategy, StateDictType

    from tests.model_sizes import SMALL_MODEL
    from training.models import build_tiny_model, build_tiny_tokenizer
    from training.options import lora_config

    parser = launch_command_parser()
    args, _, _ = _validate_launch_command(
        parser.parse_args(["--config_file", str(CONFIGS / "fsdp.yaml"), "train.py"])
    )
    env = {
        key: value
        for key, value in prepare_multi_gpu_env(args).items()
        if key.startswith(("ACCELERATE_", "FSDP_"))
    }
    # Broadcasting rank 0's weights is for GPUs; accelerate refuses it on a CPU.
    env["FSDP_SYNC_MODULE_STATES"] = "false"
    tokenizer = build_tiny_tokenizer(["def f():\n    return 1\n"] * 4, vocab_size=300)
    model = build_tiny_model(tokenizer, **SMALL_MODEL)
    model = get_peft_model(model, lora_config(TrainOptions(**OPTIONS.__dict__)))
    with patch_environment(**env):
        plugin = FullyShardedDataParallelPlugin()
        plugin.set_auto_wrap_policy(model)
        # What the Trainer adds for a peft model (transformers' update_fsdp_plugin_peft).
        fsdp_auto_wrap_policy(model)
    assert plugin.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT
    assert plugin.use_orig_params is True
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_share_the_batch_and_rank_0_writes(ddp_run):
    root, data_files, probes, writes = ddp_run
    manifest = read_manifest(root / "bundle")
    training = manifest.training
    assert training["world_size"] == WORLD_SIZE and training["device"] == "cpu"
    assert training["options"]["batch_size"] == BATCH_SIZE
    assert training["options"]["grad_accum"] == GRAD_ACCUM
    records = training["stages"][RNP]["train_records"]
    assert records == 8
    # batch_size * grad_accum * world_size records an optimizer step: 2 steps an epoch.
    per_epoch = math.ceil(records / (BATCH_SIZE * GRAD_ACCUM * WORLD_SIZE))
    assert per_epoch == 2
    assert training["stages"]["stage0"]["train_records"] == records  # rnp's only
    assert training["stages"]["stage0"]["steps"] == per_epoch * OPTIONS.stage0_epochs
    assert training["stages"][RNP]["steps"] == per_epoch * OPTIONS.epochs
    history = training["loss_history"][RNP]
    assert [step for step, _ in history] == [1, 2, 3, 4]
    # Finite losses: each rnp item counts once, in a batch of one too.
    assert all(0 < loss < 10 for _, loss in history)
    assert all(math.isfinite(loss) for _, loss in training["eval_loss_history"][RNP])
    assert math.isfinite(training["stages"][RNP]["eval_loss"])
    # Every process ran every stage, in one gloo group of two, through the same steps; and
    # between them they saw each record once an epoch.
    assert sorted((p["stage"], p["rank"]) for p in probes) == [
        (stage, rank) for stage in (RNP, "stage0") for rank in range(WORLD_SIZE)
    ]
    for probe in probes:
        assert (probe["world_size"], probe["backend"]) == (WORLD_SIZE, "gloo")
        assert probe["distributed_type"] == "DistributedType.MULTI_CPU"
        assert probe["max_steps"] == 4 and probe["steps"] == [1, 2, 3, 4]
        assert probe["epoch"] == pytest.approx(OPTIONS.epochs)
        assert probe["micro_batches"] == 4 * GRAD_ACCUM
    seen = sum(p["micro_batches"] * BATCH_SIZE for p in probes if p["stage"] == RNP)
    assert seen == OPTIONS.epochs * records
    # Rank 0 alone wrote the bundle: nothing beside it and the inputs, the dataset as it
    # was, and rank 1 wrote in the run's work dir only.
    assert sorted(p.name for p in root.iterdir()) == ["bundle", "data", "train.py"]
    assert listing(root / "data") == data_files
    [rank1] = writes
    assert rank1 and all(only_in_the_work_dir(path) for path in rank1), rank1


@pytest.mark.slow
def test_an_interrupted_two_process_run_resumes_on_two_processes(tmp_path, ddp_run):
    write_records(tmp_path / "data", tasks=(RNP,))
    out = tmp_path / "bundle"
    run, probes, _ = launch(tmp_path, interrupt=(RNP, 3))
    assert run.returncode != 0 and "KeyboardInterrupt" in run.stderr
    assert not out.exists()
    work = default_work_dir(out)
    assert (work / "stage0" / "stats.json").is_file()
    checkpoint = work / RNP / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").is_file()
    # Each process's random state, for the data order and dropout to go on as they were.
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }

    # One process cannot continue it: its checkpoints count steps of four records.
    one = TrainOptions(**{**RUN_OPTIONS, "resume": True})
    with pytest.raises(HunkwiseError, match="ran on 2 processes and this run on 1"):
        train_bundle(tmp_path / "data", "tiny", out, one)
    assert (checkpoint / "trainer_state.json").is_file()

    run, probes, writes = launch(tmp_path, resume=True)
    assert run.returncode == 0, run.stderr[-4000:]
    # Stage 0 is reused; rnp goes on after its checkpoint, on both processes.
    assert sorted((p["stage"], p["rank"], tuple(p["steps"])) for p in probes) == [
        (RNP, 0, (3, 4)),
        (RNP, 1, (3, 4)),
    ]
    training = read_manifest(out).training
    assert training["world_size"] == WORLD_SIZE and training["stages"][RNP]["steps"] == 4
    assert training["stages"]["stage0"]["steps"] == 4
    # The same steps on the same records as the uninterrupted run: the same losses.
    uninterrupted = read_manifest(ddp_run[0] / "bundle").training
    for key in ("loss_history", "eval_loss_history"):
        assert training[key] == uninterrupted[key]
    assert not work.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "data", "train.py"]
    [rank1] = writes
    assert all(only_in_the_work_dir(path) for path in rank1), rank1
