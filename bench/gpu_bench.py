"""Benchmark: throughput of hunkwise's model side on a base with Qwen2.5-Coder-1.5B's shapes.

Four measurements, each beside the slower way it replaces:

1. stage-2 LoRA training tokens/s and model-FLOPs utilisation, packed (padding-free,
   position ids) vs padded batches of the same examples;
2. RNP scoring hunks/s, the engine's way (:meth:`training.engine.Engine.score`: one batched
   forward pass, left padding, ``logits_to_keep=1``) vs one ``generate(max_new_tokens=1)``
   call per hunk;
3. review-comment generation tokens/s, batched greedy vs one prompt at a time;
4. memory of the base alone vs the base with the four task adapters loaded.

The model is built from a config with random weights (speed needs no trained weights) and
nothing is downloaded. On a CUDA machine (bf16)::

    python bench/gpu_bench.py --device cuda

On a CPU, ``--small`` shrinks the model so the run takes about a minute; its figures show
that the code paths work, not what a GPU does::

    python bench/gpu_bench.py --small --device cpu
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from training.data import (  # noqa: E402
    Example,
    encode_prompt,
    encode_records,
    left_pad,
    make_collator,
)
from training.errors import HunkwiseError  # noqa: E402
from training.models import build_tiny_tokenizer, resolve_device  # noqa: E402
from training.options import TrainOptions, lora_config  # noqa: E402
from training.tasks import (  # noqa: E402
    ADAPTER_TASKS,
    CR,
    DEFAULT_INSTRUCTIONS,
    EDIT,
    RCG,
    RNP,
    Record,
    RecordMeta,
    cr_input,
)

#: Qwen2.5-Coder-1.5B's shapes (its config.json), random weights.
FULL_SHAPES: dict[str, Any] = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "rope_theta": 1_000_000.0,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
#: ``--small``: the same architecture at the tiny preset's size, for a CPU.
SMALL_SHAPES: dict[str, Any] = {
    **FULL_SHAPES,
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "max_position_embeddings": 2048,
}
#: Defaults per preset, for the options not given.
PRESET_DEFAULTS: dict[str, dict[str, int]] = {
    "full": {
        "batch_size": 16,
        "steps": 20,
        "warmup": 5,
        "seq_len": 1024,
        "hunks": 256,
        "max_new_tokens": 64,
    },
    # seq_len 512 as CPU training uses (training.options.AUTO_DEFAULTS).
    "small": {
        "batch_size": 4,
        "steps": 8,
        "warmup": 2,
        "seq_len": 512,
        "hunks": 32,
        "max_new_tokens": 32,
    },
}
#: H100 SXM dense bf16 (no sparsity); H200 has the same.
DEFAULT_PEAK_TFLOPS = 989.0
#: Review hunks' lengths in tokens: lognormal around this median, cut to [min, max].
HUNK_MEDIAN_TOKENS = 250
HUNK_SIGMA = 0.6
HUNK_MIN_TOKENS = 100
HUNK_MAX_TOKENS = 1000
#: The issue's targets, met or not on a GPU; on a CPU they are shown, not judged.
TARGETS = {"packed_over_padded": 1.5, "mfu": 0.35, "score_speedup": 20.0, "memory_ratio": 1.05}
# transformers' Trainer groups lengths within megabatches of at most 50 batches.
_MEGABATCH_MULT = 50


_META = RecordMeta(source="history", repo="bench")


# --- a code-like workload ----------------------------------------------------------------

_NAMES = [
    *("request", "value", "items", "config", "path", "result", "user", "count", "data"),
    *("node", "index", "buffer", "cache", "token", "limit", "offset", "handler"),
    *("response", "session", "error", "record", "commit", "branch", "hunk"),
]
_VERBS = [
    *("get", "load", "parse", "update", "render", "validate", "split", "join"),
    *("append", "format", "encode", "read"),
]


def _code_line(rng: random.Random) -> str:
    a, b = rng.sample(_NAMES, 2)
    verb, number = rng.choice(_VERBS), rng.randint(0, 999)
    indent = "    " * rng.randint(0, 3)
    body = rng.choice(
        [
            f"{a} = {b}.{verb}({number})",
            f"if {a} is None or {a} > {number}:",
            f"return {verb}_{a}({b}, limit={number})",
            f"for {a} in {b}.{verb}():",
            f"def {verb}_{a}(self, {b}, {a}={number}):",
            f'raise ValueError(f"bad {a}: {{{b}!r}}")',
            f"self.{a}[{b}] = {number}",
            f"# {verb} the {a} before the {b} is used",
        ]
    )
    return indent + body


@dataclass(frozen=True)
class GeneratedHunk:
    """A generated diff hunk: its text, and its two sides as code."""

    text: str
    old: str
    new: str


class HunkFactory:
    """Unified-diff hunks of code-like lines whose token counts follow review hunks'
    lognormal distribution."""

    def __init__(self, tokenizer, rng: random.Random, max_tokens: int) -> None:
        self.rng = rng
        self.max_tokens = max_tokens
        lines = [
            rng.choices(" +-", weights=(5, 3, 2))[0] + _code_line(rng) + "\n" for _ in range(4000)
        ]
        counts = tokenizer(lines, add_special_tokens=False)["input_ids"]
        self.lines = [(line, len(ids)) for line, ids in zip(lines, counts, strict=True)]

    def target_tokens(self) -> int:
        drawn = self.rng.lognormvariate(math.log(HUNK_MEDIAN_TOKENS), HUNK_SIGMA)
        low = min(HUNK_MIN_TOKENS, self.max_tokens)
        return int(min(max(drawn, low), self.max_tokens))

    def make(self) -> GeneratedHunk:
        target, total, body = self.target_tokens(), 0, []
        while total < target:
            line, count = self.rng.choice(self.lines)
            body.append(line)
            total += count
        start = self.rng.randint(1, 900)
        old = [line[1:] for line in body if line[0] in " -"]
        new = [line[1:] for line in body if line[0] in " +"]
        header = f"@@ -{start},{len(old)} +{start},{len(new)} @@\n"
        return GeneratedHunk(header + "".join(body), "".join(old), "".join(new))


def record_for(hunk: GeneratedHunk, task: str, rng: random.Random) -> Record:
    """A stage-2 record of ``task`` built from ``hunk`` (outputs as mined history has them)."""
    a, b = rng.sample(_NAMES, 2)
    comment = f"Check that {a} is not None before {rng.choice(_VERBS)}ing {b}."
    if task == RNP:
        return Record.make(RNP, hunk.text, rng.choice(("yes", "no")), _META)
    if task == RCG:
        return Record.make(RCG, hunk.text, comment, _META)
    if task == CR:
        return Record.make(CR, cr_input(comment, hunk.old), hunk.new, _META)
    return Record.make(EDIT, hunk.old, hunk.new, _META, instruction=f"Rename {a} to {b}.")


@dataclass
class Workload:
    """Everything the measurements feed the model: tokenised training examples (the four
    tasks in turn) and RNP / RCG hunks."""

    tokenizer: Any
    examples: list[Example]
    hunks: list[str]

    def lengths(self) -> list[int]:
        return [len(example) for example in self.examples]


def build_workload(
    rng: random.Random, seq_len: int, n_examples: int, n_hunks: int, vocab_limit: int
) -> Workload:
    corpus = [_code_line(rng) for _ in range(3000)]
    # The label-word merges may add a few ids past vocab_size: leave room for them.
    tokenizer = build_tiny_tokenizer(corpus, vocab_size=min(4096, vocab_limit) - 16)
    if len(tokenizer) > vocab_limit:
        raise SystemExit(f"tokenizer has {len(tokenizer)} ids, the model only {vocab_limit}")
    # The prompt template takes about 60 tokens of the budget.
    factory = HunkFactory(tokenizer, rng, max_tokens=min(HUNK_MAX_TOKENS, seq_len - 64))
    records = [
        record_for(factory.make(), ADAPTER_TASKS[i % len(ADAPTER_TASKS)], rng)
        for i in range(n_examples)
    ]
    examples, _ = encode_records(records, tokenizer, seq_len)
    hunks = [factory.make().text for _ in range(n_hunks)]
    return Workload(tokenizer, examples, hunks)


# --- model -------------------------------------------------------------------------------


def build_base(shapes: dict[str, Any], tokenizer, device: str, dtype: torch.dtype, attn: str):
    """A randomly initialised Qwen2 causal LM with ``shapes``, made directly on ``device``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        **shapes,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device(device):
        model = Qwen2ForCausalLM._from_config(config, dtype=dtype, attn_implementation=attn)
    model.eval()
    model.requires_grad_(False)
    return model


def add_task_adapters(base, autocast_adapter_dtype: bool = True):
    """The base with one named LoRA adapter per task (rnp, rcg, cr, edit), the hunkwise
    training configuration. ``autocast_adapter_dtype`` is peft's default (True): adapters
    of a bf16 base held in float32, as :meth:`Engine.load` gets them."""
    from peft import get_peft_model

    config = lora_config(TrainOptions())
    first, *others = ADAPTER_TASKS
    model = get_peft_model(
        base, config, adapter_name=first, autocast_adapter_dtype=autocast_adapter_dtype
    )
    for task in others:
        model.add_adapter(task, config, autocast_adapter_dtype=autocast_adapter_dtype)
    model.eval()
    model.requires_grad_(False)
    return model


def parameter_bytes(model, lora: bool | None = None) -> int:
    """Bytes of the parameters (shared ones once); ``lora`` True / False: only / no LoRA."""
    total = 0
    for name, parameter in model.named_parameters():
        if lora is None or ("lora_" in name) == lora:
            total += parameter.numel() * parameter.element_size()
    return total


def full_shapes_parameter_bytes() -> dict[str, Any]:
    """Parameter bytes of the 1.5B shapes in bf16, and the ratio with the four adapters held
    in float32 (peft's default on a bf16 base) or in bf16: computed from the parameter
    counts of a model on the meta device, not measured."""

    from peft import get_peft_model

    class _Ids:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = build_base(FULL_SHAPES, _Ids(), "meta", torch.bfloat16, "sdpa")
        base_bytes = parameter_bytes(base)
        model = get_peft_model(base, lora_config(TrainOptions()))
        # Four adapters of the same shapes.
        lora = 4 * sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    return {
        "base_bytes": base_bytes,
        "adapter_parameters": lora,
        "ratio": {
            "float32 adapters": round((base_bytes + 4 * lora) / base_bytes, 4),
            "bf16 adapters": round((base_bytes + 2 * lora) / base_bytes, 4),
        },
    }


# --- timing ------------------------------------------------------------------------------


class Clock:
    """Wall time with the GPU's queue drained first, so timers see finished work."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


# --- 1. training -------------------------------------------------------------------------


@dataclass
class TrainRow:
    batches: str
    steps: int
    seconds: float
    real_tokens: int
    padded_tokens: int
    tokens_per_s: float
    model_tflops: float
    mfu: float | None


def _batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    return [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]


def bench_training(
    base,
    workload: Workload,
    device: str,
    batch_size: int,
    steps: int,
    warmup: int,
    peak_flops: float | None,
    seed: int,
    clock: Clock,
) -> tuple[list[TrainRow], dict[str, Any]]:
    """Stage-2 LoRA steps (forward, backward, clip, AdamW, as the Trainer takes them) on
    packed and padded batches of the same ``steps * batch_size`` examples. Collation happens
    before the timers (the Trainer's data loader overlaps it with compute)."""
    from peft import get_peft_model
    from transformers.trainer_pt_utils import get_length_grouped_indices

    options = TrainOptions()
    torch.manual_seed(seed)
    model = get_peft_model(base, lora_config(options))
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in model.parameters())
    on_cuda = device.startswith("cuda")
    optimizer = torch.optim.AdamW(trainable, lr=options.learning_rate, fused=on_cuda)
    dtype = next(base.parameters()).dtype
    autocast = torch.autocast("cuda", dtype=dtype, enabled=on_cuda and dtype != torch.float32)

    features = [example.features() for example in workload.examples]
    lengths = workload.lengths()
    random_order = _batches(
        random.Random(seed).sample(range(len(features)), len(features)), batch_size
    )
    generator = torch.Generator().manual_seed(seed)
    grouped = get_length_grouped_indices(lengths, batch_size, _MEGABATCH_MULT, generator)
    packed_collator = make_collator(workload.tokenizer, packed=True)
    padded_collator = make_collator(workload.tokenizer, packed=False)
    plans: list[tuple[str, Callable, list[list[int]]]] = [
        ("packed (padding-free)", packed_collator, random_order),
        ("padded, same batches", padded_collator, random_order),
        ("padded, length-grouped", padded_collator, _batches(grouped, batch_size)),
    ]

    # Packing must keep examples apart: the same batch gives the same loss both ways.
    model.eval()
    check = [features[i] for i in random_order[0]]
    with torch.no_grad(), autocast:
        losses = [
            model(**_to(collator(check), device), use_cache=False).loss.float().item()
            for collator in (packed_collator, padded_collator)
        ]
    model.train()

    def train_step(batch: dict[str, Any]) -> float:
        start = clock.now()
        with autocast:
            loss = model(**_to(batch, device), use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return clock.now() - start

    collated = [
        [collator([features[i] for i in ids]) for ids in plan] for _, collator, plan in plans
    ]
    real = [[sum(lengths[i] for i in ids) for ids in plan] for _, _, plan in plans]
    seconds = [0.0] * len(plans)
    real_tokens = [sum(counts) for counts in real]
    padded_tokens = [sum(batch["input_ids"].numel() for batch in batches) for batches in collated]
    for step in range(warmup):
        for batches in collated:
            train_step(batches[step % len(batches)])
    # Every plan times each of its batches once (the same examples, so the same real tokens);
    # the plans take turns step by step, so a machine's changing load hits them alike.
    steps = len(collated[0])
    for step in range(steps):
        for k, batches in enumerate(collated):
            seconds[k] += train_step(batches[step])
    rows = []
    for k, (name, _, _) in enumerate(plans):
        flops = 6 * n_params * real_tokens[k] / seconds[k]
        rows.append(
            TrainRow(
                batches=name,
                steps=steps,
                seconds=round(seconds[k], 3),
                real_tokens=real_tokens[k],
                padded_tokens=padded_tokens[k],
                tokens_per_s=round(real_tokens[k] / seconds[k], 1),
                model_tflops=round(flops / 1e12, 4),
                mfu=round(flops / peak_flops, 4) if peak_flops else None,
            )
        )
    info = {
        "parameters": n_params,
        "trainable_parameters": sum(p.numel() for p in trainable),
        "loss_packed": round(losses[0], 5),
        "loss_padded": round(losses[1], 5),
        "packed_over_padded": round(rows[0].tokens_per_s / rows[1].tokens_per_s, 2),
        "packed_over_grouped": round(rows[0].tokens_per_s / rows[2].tokens_per_s, 2),
    }
    return rows, info


def _to(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


# --- 2. RNP scoring ----------------------------------------------------------------------


def bench_scoring(engine, hunks: list[str], device: str, clock: Clock) -> dict[str, Any]:
    """Hunks/s of ``Engine.score`` vs one ``generate(max_new_tokens=1)`` per hunk."""
    model, tokenizer = engine.model, engine.tokenizer
    yes, no = engine.label_token_ids
    instruction = DEFAULT_INSTRUCTIONS[RNP]

    def one_by_one(texts: list[str]) -> list[float]:
        scores = []
        model.set_adapter(RNP)
        with torch.inference_mode():
            for text in texts:
                ids = torch.tensor([engine.encode(instruction, text)], device=device)
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=1,
                    do_sample=False,
                    output_scores=True,
                    return_dict_in_generate=True,
                    pad_token_id=tokenizer.pad_token_id,
                )
                pair = out.scores[0][0, [yes, no]].float()
                scores.append(torch.softmax(pair, dim=-1)[0].item())
        return scores

    engine.score(hunks[: engine.batch_size])
    one_by_one(hunks[:2])
    start = clock.now()
    batched = engine.score(hunks)
    batched_s = clock.now() - start
    start = clock.now()
    single = one_by_one(hunks)
    single_s = clock.now() - start
    lengths = [len(engine.encode(instruction, text)) for text in hunks]
    return {
        "hunks": len(hunks),
        "prompt_tokens_median": int(statistics.median(lengths)),
        "batch_size": engine.batch_size,
        "batched_hunks_per_s": round(len(hunks) / batched_s, 2),
        "one_by_one_hunks_per_s": round(len(hunks) / single_s, 2),
        "speedup": round(single_s / batched_s, 2),
        "max_abs_p_diff": round(max(abs(a - b) for a, b in zip(batched, single, strict=True)), 5),
    }


# --- 3. comment generation ---------------------------------------------------------------


def bench_generation(
    model,
    tokenizer,
    hunks: list[str],
    max_prompt_tokens: int,
    batch_size: int,
    max_new_tokens: int,
    device: str,
    clock: Clock,
) -> dict[str, Any]:
    """Greedy RCG tokens/s in batches of ``batch_size`` vs one prompt at a time; EOS is
    suppressed (``min_new_tokens``) so both make exactly ``max_new_tokens`` per prompt."""
    from transformers import GenerationConfig

    prompts = [
        encode_prompt(tokenizer, DEFAULT_INSTRUCTIONS[RCG], text, max_prompt_tokens)
        for text in hunks
    ]
    model.set_adapter(RCG)

    def run(size: int, new_tokens: int, items: list[list[int]]) -> int:
        config = GenerationConfig(
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        made = 0
        with torch.inference_mode():
            for start in range(0, len(items), size):
                input_ids, mask = (
                    t.to(device) for t in left_pad(tokenizer, items[start : start + size])
                )
                out = model.generate(
                    input_ids=input_ids, attention_mask=mask, generation_config=config
                )
                made += out[:, input_ids.shape[1] :].numel()
        return made

    run(batch_size, 4, prompts[:batch_size])
    run(1, 4, prompts[:1])
    results: dict[str, Any] = {
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "prompt_tokens_median": int(statistics.median(len(ids) for ids in prompts)),
    }
    for label, size in (("batched", batch_size), ("unbatched", 1)):
        start = clock.now()
        made = run(size, max_new_tokens, prompts)
        seconds = clock.now() - start
        results[f"{label}_tokens"] = made
        results[f"{label}_tokens_per_s"] = round(made / seconds, 1)
    results["batch_size"] = batch_size
    results["speedup"] = round(
        results["batched_tokens_per_s"] / results["unbatched_tokens_per_s"], 2
    )
    return results


# --- 4. memory ---------------------------------------------------------------------------


def bench_memory(base, workload: Workload, batch_size: int, device: str, max_prompt: int):
    """Memory of the base alone, then with the four adapters (peft's default dtype, as the
    engine loads them, and in the base's dtype): allocated after loading and the peak of one
    RNP scoring forward pass. On a CPU: parameter bytes. Returns the base, unwrapped again."""
    prompts = [
        encode_prompt(workload.tokenizer, DEFAULT_INSTRUCTIONS[RNP], text, max_prompt)
        for text in workload.hunks[:batch_size]
    ]
    input_ids, mask = (t.to(device) for t in left_pad(workload.tokenizer, prompts))
    on_cuda = device.startswith("cuda")

    def measure(model, label: str) -> dict[str, Any]:
        row: dict[str, Any] = {
            "model": label,
            "parameter_bytes": parameter_bytes(model),
            "adapter_dtype": next(
                (
                    str(p.dtype).removeprefix("torch.")
                    for n, p in model.named_parameters()
                    if "lora_" in n
                ),
                None,
            ),
        }
        if on_cuda:
            gc.collect()
            torch.cuda.synchronize(device)
            torch.cuda.empty_cache()
            row["allocated_bytes"] = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            with torch.inference_mode():
                model(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    logits_to_keep=1,
                )
            torch.cuda.synchronize(device)
            row["peak_bytes"] = torch.cuda.max_memory_allocated(device)
        return row

    rows = [measure(base, "base")]
    for label, autocast in (
        ("base + 4 adapters (peft default dtype)", True),
        ("base + 4 adapters (base dtype)", False),
    ):
        model = add_task_adapters(base, autocast_adapter_dtype=autocast)
        model.set_adapter(RNP)
        rows.append(measure(model, label))
        base = model.unload()
        del model
    key = "peak_bytes" if on_cuda else "parameter_bytes"
    for row in rows:
        row["ratio"] = round(row[key] / rows[0][key], 4)
    return rows, key, base


# --- report ------------------------------------------------------------------------------


def header(
    args: argparse.Namespace,
    device: str,
    dtype: torch.dtype,
    shapes: dict[str, Any],
    workload: Workload,
) -> dict[str, Any]:
    import peft
    import transformers

    lengths = workload.lengths()
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "load_average": round(os.getloadavg()[0], 2),
        "cpu_threads": torch.get_num_threads(),
        "device": device,
        "gpu": gpu,
        "dtype": str(dtype).removeprefix("torch."),
        "attention": args.attn,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "preset": "small" if args.small else "Qwen2.5-Coder-1.5B shapes",
        "shapes": {
            key: shapes[key]
            for key in (
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "vocab_size",
            )
        },
        "weights": "random init from a Qwen2Config (nothing downloaded)",
        "tokenizer": (
            f"hunkwise tiny BPE ({len(workload.tokenizer)} ids) trained on generated code-like "
            f"text; its ids used as they are inside the model's {shapes['vocab_size']}-id vocabulary"
        ),
        "seed": args.seed,
        "seq_len": args.seq_len,
        "examples": len(lengths),
        "example_tokens": {
            "min": min(lengths),
            "median": int(statistics.median(lengths)),
            "mean": round(statistics.fmean(lengths), 1),
            "max": max(lengths),
        },
    }


def judge(report: dict[str, Any], on_gpu: bool) -> dict[str, dict[str, Any]]:
    """Each target beside its measured value; ``met`` is None off a GPU (not judged)."""
    training, memory = report["training"], report["memory"]["rows"]
    values = {
        "packed_over_padded": (training["info"]["packed_over_padded"], ">="),
        "mfu": (training["rows"][0]["mfu"], ">="),
        "score_speedup": (report["scoring"]["speedup"], ">="),
        # The adapters as the engine loads them (peft's default dtype).
        "memory_ratio": (memory[1]["ratio"], "<="),
    }
    verdicts = {}
    for name, (value, sense) in values.items():
        target = TARGETS[name]
        met = None
        if on_gpu and value is not None:
            met = value >= target if sense == ">=" else value <= target
        verdicts[name] = {"value": value, "target": f"{sense} {target}", "met": met}
    return verdicts


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MiB"


def render(report: dict[str, Any]) -> str:
    h, t, s, g = report["header"], report["training"], report["scoring"], report["generation"]
    on_gpu = h["gpu"] is not None
    note = "" if on_gpu else " (GPU target; not judged on a CPU)"
    lines = [
        f"hunkwise GPU throughput benchmark, {h['date']}",
        f"machine: {h['machine']} (load average {h['load_average']}, torch threads {h['cpu_threads']}); device: {h['device']}{' (' + h['gpu'] + ')' if h['gpu'] else ''}; "
        f"dtype {h['dtype']}; attention {h['attention']}",
        f"torch {h['torch']}, transformers {h['transformers']}, peft {h['peft']}, Python {h['python']}",
        f"model: {h['preset']} {h['shapes']}, {h['weights']}",
        f"tokenizer: {h['tokenizer']}",
        f"examples: {h['examples']} (four tasks in turn), tokens {h['example_tokens']}, seq len {h['seq_len']}",
        "",
        f"1. stage-2 LoRA training (r=16, alpha=32, all linear projections, AdamW lr 3e-4), "
        f"batch {report['config']['batch_size']}, {t['rows'][0]['steps']} timed steps after "
        f"{report['config']['warmup']} warm-up",
        f"   {'batches':<24}{'tokens/s':>10}{'s/step':>9}{'real tok':>10}{'pad %':>7}{'TFLOP/s':>10}{'MFU':>8}",
    ]
    for row in t["rows"]:
        pad = 100 * (1 - row["real_tokens"] / row["padded_tokens"])
        mfu = "n/a" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        lines.append(
            f"   {row['batches']:<24}{row['tokens_per_s']:>10,.0f}{row['seconds'] / row['steps']:>9.3f}"
            f"{row['real_tokens']:>10,}{pad:>7.1f}{row['model_tflops']:>10.3f}{mfu:>8}"
        )
    info = t["info"]
    lines += [
        f"   packed / padded: {info['packed_over_padded']}x (target >= {TARGETS['packed_over_padded']}x{note}); "
        f"packed / length-grouped padded: {info['packed_over_grouped']}x",
        f"   FLOPs = 6 * N * real tokens, N = {info['parameters']:,} (all parameters, frozen + "
        f"{info['trainable_parameters']:,} LoRA; tied embedding once, as the LM-head matmul); "
        f"attention scores not counted; MFU target >= {100 * TARGETS['mfu']:.0f}%{note}"
        + (
            "" if report["config"]["peak_tflops"] else "; MFU n/a: no --peak-tflops for this device"
        ),
        f"   check: loss of one batch packed {info['loss_packed']} vs padded {info['loss_padded']}",
        "",
        f"2. RNP scoring, {s['hunks']} hunks (median prompt {s['prompt_tokens_median']} tokens)",
        f"   engine (batched {s['batch_size']}, left padding, logits_to_keep=1): {s['batched_hunks_per_s']:,} hunks/s",
        f"   one hunk at a time, generate(max_new_tokens=1, output_scores=True): {s['one_by_one_hunks_per_s']:,} hunks/s",
        f"   speedup: {s['speedup']}x (target >= {TARGETS['score_speedup']:.0f}x{note}); "
        f"max |P(yes) difference|: {s['max_abs_p_diff']}",
        "",
        f"3. RCG greedy generation, {g['prompts']} prompts (median {g['prompt_tokens_median']} tokens), "
        f"{g['max_new_tokens']} new tokens each, EOS suppressed",
        f"   batched ({g['batch_size']}): {g['batched_tokens_per_s']:,} tokens/s; "
        f"unbatched (1): {g['unbatched_tokens_per_s']:,} tokens/s; speedup {g['speedup']}x",
        "",
        "4. memory: "
        + (
            "torch.cuda.max_memory_allocated over one batched RNP forward pass"
            if on_gpu
            else "parameter bytes (no GPU: torch.cuda memory cannot be measured)"
        ),
    ]
    for row in report["memory"]["rows"]:
        measured = (
            f"peak {_mib(row.get('peak_bytes'))}, allocated {_mib(row.get('allocated_bytes'))}, "
            if on_gpu
            else ""
        )
        lines.append(
            f"   {row['model']:<40} {measured}parameters {_mib(row['parameter_bytes'])}"
            f"{'' if row['adapter_dtype'] is None else ', adapters ' + row['adapter_dtype']}"
            f"  ratio {row['ratio']}x"
        )
    full = report["memory"]["full_shapes"]
    lines += [
        f"   target <= {TARGETS['memory_ratio']}x{note}",
        f"   1.5B shapes, parameter bytes computed on the meta device (not measured): base "
        f"{_mib(full['base_bytes'])}, with 4 adapters: "
        + ", ".join(f"{label} {ratio}x" for label, ratio in full["ratio"].items()),
        "",
        "targets (" + ("on this GPU" if on_gpu else "not judged: no GPU") + "):",
    ]
    for name, verdict in report["targets"].items():
        met = {True: "met", False: "MISSED", None: "-"}[verdict["met"]]
        lines.append(f"   {name:<20} {verdict['value']!s:>10}  target {verdict['target']:<8} {met}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (default), cuda, cuda:N or cpu")
    parser.add_argument("--small", action="store_true", help="a tiny model for a CPU")
    parser.add_argument(
        "--steps", type=int, help="timed training steps per batching (20; --small 8)"
    )
    parser.add_argument("--warmup", type=int, help="untimed steps before them")
    parser.add_argument("--batch-size", type=int, help="training examples per step")
    parser.add_argument("--seq-len", type=int, help="max tokens of an example (1024; --small 512)")
    parser.add_argument(
        "--hunks", type=int, help="hunks scored (and, the first ones, generated for)"
    )
    parser.add_argument("--infer-batch-size", type=int, default=16)
    parser.add_argument("--gen-prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help=f"peak dense bf16 TFLOP/s for MFU (default {DEFAULT_PEAK_TFLOPS:g} on CUDA, H100 SXM; "
        "none on a CPU)",
    )
    parser.add_argument(
        "--attn", default="sdpa", help="attention implementation (sdpa, eager, flash_attention_2)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default on a CPU: 1, since OpenMP threads that spin-wait "
        "collapse on a machine whose cores are shared; on CUDA: torch's default)",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    preset = "small" if args.small else "full"
    for key, value in PRESET_DEFAULTS[preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    from training.bundle import Manifest
    from training.engine import Engine

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.simplefilter("ignore", FutureWarning)
    try:
        device = resolve_device(args.device)
    except HunkwiseError as error:
        raise SystemExit(f"gpu_bench: {error}") from None
    if device == "mps":
        device = "cpu"
    on_cuda = device.startswith("cuda")
    if not on_cuda and not args.small:
        raise SystemExit("the 1.5B shapes on a CPU would take hours; pass --small (or use a GPU)")
    if args.threads or not on_cuda:
        torch.set_num_threads(args.threads or 1)
    dtype = torch.float32
    if on_cuda:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    peak = args.peak_tflops if args.peak_tflops else (DEFAULT_PEAK_TFLOPS if on_cuda else None)
    shapes = SMALL_SHAPES if args.small else FULL_SHAPES
    set_seed(args.seed)
    rng = random.Random(args.seed)
    clock = Clock(device)

    n_examples = args.steps * args.batch_size
    workload = build_workload(rng, args.seq_len, n_examples, args.hunks, shapes["vocab_size"])
    base = build_base(shapes, workload.tokenizer, device, dtype, args.attn)
    memory_rows, memory_key, base = bench_memory(
        base, workload, args.infer_batch_size, device, args.seq_len
    )

    model = add_task_adapters(base)
    manifest = Manifest(
        base_model="bench:random-init", tasks={task: task for task in ADAPTER_TASKS}
    )
    engine = Engine(
        model,
        workload.tokenizer,
        manifest,
        Path("(in memory)"),
        batch_size=args.infer_batch_size,
        max_new_tokens=args.max_new_tokens,
        max_prompt_tokens=args.seq_len,
    )
    scoring = bench_scoring(engine, workload.hunks, device, clock)
    generation = bench_generation(
        model,
        workload.tokenizer,
        workload.hunks[: args.gen_prompts],
        args.seq_len,
        args.infer_batch_size,
        args.max_new_tokens,
        device,
        clock,
    )
    base = model.unload()
    del engine, model
    rows, info = bench_training(
        base,
        workload,
        device,
        args.batch_size,
        args.steps,
        args.warmup,
        peak * 1e12 if peak else None,
        args.seed,
        clock,
    )

    report = {
        "header": header(args, device, dtype, shapes, workload),
        "config": {
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "infer_batch_size": args.infer_batch_size,
            "peak_tflops": peak,
            "flops_formula": "6 * N_params(frozen + LoRA) * real tokens; attention scores excluded",
        },
        "training": {"rows": [asdict(row) for row in rows], "info": info},
        "scoring": scoring,
        "generation": generation,
        "memory": {
            "measure": memory_key,
            "rows": memory_rows,
            "full_shapes": full_shapes_parameter_bytes(),
        },
    }
    report["targets"] = judge(report, on_cuda)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))


if __name__ == "__main__":
    main()
