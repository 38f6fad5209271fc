"""A bundle as llama.cpp serves it: the base as one GGUF file, each task adapter as a GGUF
LoRA adapter on it, and a config file for llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server --config_file``) that serves each adapter under its task's
name, with the bundle's own Hugging Face tokenizer so that prompts are tokenised exactly
as the local engine tokenises them.

Written with the ``gguf`` package (llama.cpp's own writer). What llama.cpp's converter
does for a LLaMA model is done here for the architectures hunkwise trains (plain LLaMA:
the tiny preset): tensor names through gguf's name map, the query and key rows permuted
from Hugging Face's rotary layout to llama.cpp's, f32 weights, the byte-level BPE
vocabulary with its merges. A LoRA adapter keeps its A and B matrices (B permuted like
the weight it changes) and its scale as ``adapter.lora.alpha``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from training.bundle import BUNDLE_BASE, BundleError, read_adapter_config, read_manifest
from training.errors import HunkwiseError, first_line
from training.output_dirs import check_writable

#: The config file written beside the GGUF files.
SERVER_CONFIG = "llama-cpp-server.json"
_PEFT_PREFIX = "base_model.model."
#: peft's names of a LoRA pair's matrices, and llama.cpp's.
_LORA_SUFFIXES = ((".lora_A.weight", ".lora_a"), (".lora_B.weight", ".lora_b"))


@dataclass(frozen=True)
class GgufExport:
    """What :func:`export_bundle` wrote."""

    out: Path
    base: Path
    adapters: dict[str, Path]
    config: Path


def export_bundle(
    bundle: Path,
    out: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    n_ctx: int | None = None,
    threads: int | None = None,
) -> GgufExport:
    """Write ``bundle``'s base and adapters as GGUF into ``out``, and the server's config."""
    import gguf

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    if manifest.base_model != BUNDLE_BASE:
        raise HunkwiseError(
            f"the bundle at {bundle} is on {manifest.base_model}: convert that base with "
            "llama.cpp's convert_hf_to_gguf.py and its adapters with convert_lora_to_gguf.py; "
            "hunkwise exports the bases it builds (the tiny preset)"
        )
    if manifest.stage1:
        raise HunkwiseError(
            f"the bundle at {bundle} has a stage-1 adapter merged into its base; "
            "exporting that base to GGUF is not supported yet"
        )
    out = Path(out)
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    base_dir = bundle / "base"
    config = _read_json(base_dir / "config.json")
    _check_llama(config, base_dir)
    base_file = out / "base.gguf"
    _write_base(gguf, base_dir, config, base_file)
    adapters = {}
    for task, subdir in manifest.tasks.items():
        path = out / f"{task}.gguf"
        _write_lora(gguf, bundle / subdir, config, path)
        adapters[task] = path
    config_path = out / SERVER_CONFIG
    context = n_ctx or int(config.get("max_position_embeddings") or 2048)
    models = [
        {
            "model": str(base_file.resolve()),
            "model_alias": task,
            "lora_path": str(path.resolve()),
            "hf_pretrained_model_name_or_path": str(base_dir.resolve()),
            "n_ctx": context,
            "logits_all": True,
            "verbose": False,
            **({"n_threads": threads} if threads else {}),
        }
        for task, path in adapters.items()
    ]
    server = {"host": host, "port": port, "models": models}
    config_path.write_text(json.dumps(server, indent=2) + "\n", encoding="utf-8")
    return GgufExport(out=out, base=base_file, adapters=adapters, config=config_path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BundleError(f"cannot read {path} ({first_line(error)})") from None


def _check_llama(config: dict, base_dir: Path) -> None:
    architectures = config.get("architectures") or []
    if config.get("model_type") != "llama" or architectures != ["LlamaForCausalLM"]:
        raise HunkwiseError(
            f"the base in {base_dir} is {architectures or config.get('model_type')}; "
            "hunkwise writes GGUF for plain LLaMA bases only"
        )
    scaling = config.get("rope_scaling") or {}
    rope = config.get("rope_parameters") or {}
    kind = scaling.get("rope_type") or rope.get("rope_type") or "default"
    if kind != "default":
        raise HunkwiseError(f"the base in {base_dir} uses rope scaling {kind!r}; not supported")


def _rope_theta(config: dict) -> float:
    rope = config.get("rope_parameters") or {}
    return float(rope.get("rope_theta") or config.get("rope_theta") or 10000.0)


def _permute(weights, n_head: int):
    """Hugging Face's rotary layout of query/key rows to llama.cpp's (its converter's
    ``permute``)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _heads_of(hf_name: str, config: dict) -> int | None:
    """The head count to permute a tensor's rows by (None: not a query or key)."""
    heads = int(config["num_attention_heads"])
    if hf_name.endswith("self_attn.q_proj.weight"):
        return heads
    if hf_name.endswith("self_attn.k_proj.weight"):
        return int(config.get("num_key_value_heads") or heads)
    return None


def _name_map(gguf, config: dict):
    return gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(config["num_hidden_layers"]))


def _gguf_name(names, hf_name: str) -> str:
    name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    if name is None:
        raise HunkwiseError(f"no GGUF name for tensor {hf_name!r}")
    return name


def _write_base(gguf, base_dir: Path, config: dict, path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    tensors: dict[str, np.ndarray] = {}
    for file in sorted(base_dir.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    if not tensors:
        raise BundleError(f"{base_dir} holds no safetensors weights")
    names = _name_map(gguf, config)
    heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name("hunkwise base")
    writer.add_context_length(int(config.get("max_position_embeddings") or 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps") or 1e-6))
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_rope_dimension_count(int(config.get("head_dim") or hidden // heads))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _write_vocab(gguf, writer, AutoTokenizer.from_pretrained(str(base_dir)), base_dir, config)
    tied = bool(config.get("tie_word_embeddings"))
    for hf_name, value in tensors.items():
        if tied and hf_name == "lm_head.weight":
            continue
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        array = value.astype(np.float32)
        count = _heads_of(hf_name, config)
        if count is not None:
            array = _permute(array, count)
        writer.add_tensor(_gguf_name(names, hf_name), np.ascontiguousarray(array))
    _finish(writer)


def _write_vocab(gguf, writer, tokenizer, base_dir: Path, config: dict) -> None:
    """The byte-level BPE vocabulary (llama.cpp's "gpt2" tokenizer model), every id up to
    the model's vocabulary size, special tokens as control tokens, the merges and the
    special ids from the tokenizer's own files."""
    vocab_size = int(config["vocab_size"])
    reverse = {index: token for token, index in tokenizer.get_vocab().items()}
    controls = set(tokenizer.all_special_ids)
    tokens, types = [], []
    for index in range(vocab_size):
        token = reverse.get(index)
        if token is None:
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(token)
            types.append(gguf.TokenType.CONTROL if index in controls else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(base_dir, load_merges=True, n_vocab=vocab_size)
    # The server's config tokenises with the bundle's Hugging Face tokenizer, which adds BOS
    # itself: llama.cpp adding one too would put two in front of every prompt.
    special.add_special_token["bos"] = False
    special.add_to_gguf(writer)


def _write_lora(gguf, adapter_dir: Path, config: dict, path: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    settings = read_adapter_config(adapter_dir)
    rank = int(settings["r"])
    alpha = float(settings.get("lora_alpha") or rank)
    # llama.cpp scales B @ A by alpha / rank; rsLoRA scales by alpha / sqrt(rank).
    scale = alpha / math.sqrt(rank) if settings.get("use_rslora") else alpha / rank
    names = _name_map(gguf, config)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, scale * rank)
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    for name, value in sorted(weights.items()):
        found = [pair for pair in _LORA_SUFFIXES if name.endswith(pair[0])]
        if not found:
            raise HunkwiseError(
                f"{adapter_dir} holds {name!r}, which is not a LoRA matrix; "
                "llama.cpp takes LoRA A and B matrices only"
            )
        marker, suffix = found[0]
        hf_name = name.removeprefix(_PEFT_PREFIX).removesuffix(marker) + ".weight"
        array = value.astype(np.float32)
        count = _heads_of(hf_name, config)
        if count is not None and suffix == ".lora_b":
            array = _permute(array, count)
        writer.add_tensor(_gguf_name(names, hf_name) + suffix, np.ascontiguousarray(array))
    _finish(writer)


def _finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
