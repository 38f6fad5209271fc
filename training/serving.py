"""Serving a bundle from an inference engine: whether the engine accepts its adapters, and
the exact command that starts it (``hunkwise serve-command``).

vLLM and SGLang load peft LoRA adapters beside one base and pick one per request by the
request's ``model``. Each refuses adapters it cannot run: vLLM's ``PEFTHelper`` rejects
``modules_to_save``, DoRA and biases, takes ranks from a fixed set up to
``--max-lora-rank``, and applies LoRA to the base's linear layers only (not to the
embedding or the LM head, which need extra vocabulary support). llama.cpp's server runs
the GGUF files :mod:`training.gguf_export` writes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from training.bundle import BUNDLE_BASE, read_adapter_config, read_manifest
from training.errors import HunkwiseError
from training.remote import API_KEY_ENV, DEFAULT_TOP_LOGPROBS

ENGINES: tuple[str, ...] = ("vllm", "sglang", "llama-cpp")
#: vLLM's allowed ``--max-lora-rank`` values (vllm/config/lora.py).
VLLM_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
#: The LLaMA-family linear layers the engines apply LoRA to.
SUPPORTED_TARGETS = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
)
#: The name SGLang serves the base under; its adapters are then ``hunkwise:{task}``.
SGLANG_SERVED_NAME = "hunkwise"


class EngineRefusal(HunkwiseError):
    """The engine would refuse the bundle's adapters: what it would refuse, and why."""


@dataclass(frozen=True)
class ServeCommand:
    """How to serve a bundle: the engine's command line and the editors' settings."""

    engine: str
    argv: tuple[str, ...]
    settings: dict[str, str]
    notes: tuple[str, ...] = ()

    @property
    def shell(self) -> str:
        return " ".join(shlex.quote(part) for part in self.argv)


def adapter_problems(configs: dict[str, dict]) -> list[str]:
    """Why vLLM or SGLang would refuse each adapter, by task, from its adapter_config.json
    (empty: none)."""
    problems = []
    for task, config in configs.items():
        problems += [f"{task}: {problem}" for problem in _config_problems(config)]
    return problems


def _config_problems(config: dict) -> list[str]:
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"a {config.get('peft_type')} adapter, not LoRA")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']} (full layers saved)")
    if config.get("use_dora"):
        problems.append("DoRA (use_dora), which vLLM does not run")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("trained biases (bias, lora_bias)")
    if config.get("trainable_token_indices") or config.get("layer_replication"):
        problems.append("trained token embeddings or replicated layers")
    rank = config.get("r")
    if rank not in VLLM_RANKS:
        problems.append(f"rank {rank}, not one of vLLM's {', '.join(map(str, VLLM_RANKS))}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        problems.append("per-module ranks or alphas (rank_pattern, alpha_pattern)")
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        problems.append(f"target_modules given as a pattern ({targets!r}), not a list")
    else:
        # A module's last name is what the engines match (peft saves full paths).
        unsupported = sorted({t.rsplit(".", 1)[-1] for t in targets} - SUPPORTED_TARGETS)
        if unsupported:
            problems.append(f"LoRA on {', '.join(unsupported)}, which the engines do not adapt")
    return problems


def serve_command(
    bundle: Path,
    engine: str,
    *,
    host: str = "0.0.0.0",
    port: int = 8000,
    base: str | None = None,
    gguf_dir: Path | None = None,
) -> ServeCommand:
    """The command that serves ``bundle``'s adapters from ``engine``; refuses (raising
    :class:`EngineRefusal`) a bundle the engine would reject. ``base`` overrides where the
    engine reads the base from (default: the bundle's base/ or its hub id)."""
    bundle = Path(bundle).resolve()
    manifest = read_manifest(bundle)
    if engine not in ENGINES:
        raise HunkwiseError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if not manifest.tasks:
        raise EngineRefusal(f"the bundle at {bundle} has no adapters to serve")
    if manifest.stage1:
        raise EngineRefusal(
            f"the bundle at {bundle} has a stage-1 adapter, merged into the base before its "
            "task adapters are applied; an engine would need that merged base, which "
            "hunkwise does not export yet"
        )
    url = f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}"
    if engine == "llama-cpp":
        return _llama_cpp(bundle, host, port, url, gguf_dir)
    configs = {
        task: read_adapter_config(bundle / subdir) for task, subdir in manifest.tasks.items()
    }
    problems = adapter_problems(configs)
    if problems:
        raise EngineRefusal(
            f"{engine} would refuse the adapters of {bundle}: "
            + "; ".join(problems)
            + "; retrain them with hunkwise's defaults (plain LoRA on the linear layers)"
        )
    model = base or (
        str(bundle / "base") if manifest.base_model == BUNDLE_BASE else manifest.base_model
    )
    rank = max(int(config.get("r") or 0) for config in configs.values())
    limit = next(r for r in VLLM_RANKS if r >= rank)
    adapters = [f"{task}={bundle / subdir}" for task, subdir in manifest.tasks.items()]
    notes = (f"authentication: start it with --api-key KEY and set {API_KEY_ENV} in each editor",)
    if engine == "vllm":
        argv = (
            "vllm", "serve", model, "--host", host, "--port", str(port),
            "--enable-lora", "--lora-modules", *adapters,
            "--max-lora-rank", str(limit), "--max-loras", str(len(adapters)),
            "--max-logprobs", str(DEFAULT_TOP_LOGPROBS), "--dtype", "bfloat16",
        )  # fmt: skip
        return ServeCommand("vllm", argv, {"hunkwise.engine": url}, notes)
    argv = (
        "python", "-m", "sglang.launch_server", "--model-path", model,
        "--served-model-name", SGLANG_SERVED_NAME, "--host", host, "--port", str(port),
        "--enable-lora", "--lora-paths", *adapters, "--max-lora-rank", str(limit),
        "--max-loras-per-batch", str(len(adapters)), "--dtype", "bfloat16",
    )  # fmt: skip
    settings = {"hunkwise.engine": url, "hunkwise.engineModel": f"{SGLANG_SERVED_NAME}:{{task}}"}
    return ServeCommand("sglang", argv, settings, notes)


def _llama_cpp(bundle: Path, host: str, port: int, url: str, gguf_dir: Path | None) -> ServeCommand:
    from training.gguf_export import export_bundle

    out = Path(gguf_dir) if gguf_dir else bundle.with_name(bundle.name + "-gguf")
    export = export_bundle(bundle, out, host=host, port=port)
    argv = ("python", "-m", "llama_cpp.server", "--config_file", str(export.config.resolve()))
    notes = (
        f"GGUF files written to {out}",
        "llama-cpp-python serves one adapter at a time on the CPU: for a small team or a "
        "trial; use vLLM or SGLang on a GPU for more",
    )
    return ServeCommand("llama-cpp", argv, {"hunkwise.engine": url}, notes)
