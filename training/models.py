"""Base models: the "tiny" preset (a small LLaMA and a byte-level BPE tokenizer built from
scratch on the repository's own text), loading of real bases from the hub or a local path,
the device they run on (the one rule every command, setting and option checks), and the
libraries kept quiet while they load and train.

Heavy imports (torch, transformers, tokenizers) happen inside the functions, so importing
this module is cheap.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.bundle import BUNDLE_BASE
from training.errors import HunkwiseError, first_line
from training.tasks import DEFAULT_INSTRUCTIONS, LABEL_WORDS, cr_input, render_example

if TYPE_CHECKING:
    from transformers import (
        LlamaForCausalLM,
        PreTrainedModel,
        PreTrainedTokenizerBase,
        PreTrainedTokenizerFast,
    )

#: ``--base tiny``: the embedded default, built from scratch (stage 0) instead of loaded.
TINY = "tiny"

#: The devices hunkwise takes, besides ``cuda:N`` (one GPU of several).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
_DEVICE_NAME = re.compile(rf"({'|'.join(DEVICES)}|cuda:\d+)\Z")

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (UNK, BOS, EOS, PAD)

#: The tiny preset's architecture: about 1 M parameters with the default 4096-token
#: vocabulary (half of them the tied embedding). Measured on a shared two-core CPU it trains
#: at about 1000 tokens/s, so stage 0 and four adapters on a few hundred records per task
#: finish in minutes: it proves the pipeline, not review quality (a real base on a GPU does
#: that). Tests pass smaller overrides (hidden 64) through ``build_tiny_model``.
TINY_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 1024,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
    "initializer_range": 0.02,
}

# Pieces every prompt is made of; the tokenizer sees them many times so that
# "### Instruction:", "### Response:" and the task instructions become a few tokens each.
_TEMPLATE_REPEATS = 64


def device_name(value: object) -> str:
    """``value`` as a device hunkwise takes: auto, cpu, cuda, cuda:N or mps, whatever the
    case and surrounding spaces; a ValueError saying so otherwise. The one rule behind
    ``--device``, the ``device`` setting, training options and the engine."""
    name = value.strip().lower() if isinstance(value, str) else ""
    if not _DEVICE_NAME.match(name):
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
    return name


def resolve_device(device: str = "auto") -> str:
    """The torch device to use: ``auto`` picks cuda, then mps, then cpu.

    An explicit device that is not available is an error, not a silent fallback.
    """
    import torch

    try:
        name = device_name(device or "auto")
    except ValueError:
        raise HunkwiseError(
            f"unknown device {device!r}; use one of {', '.join(DEVICES)} (or cuda:N)"
        ) from None
    kind = name.split(":", 1)[0]
    if kind == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise HunkwiseError(
            "device 'cuda' was asked for but torch sees no CUDA GPU; "
            "use --device cpu (or auto), or install a CUDA build of torch"
        )
    if kind == "mps" and not _mps_available():
        raise HunkwiseError("device 'mps' was asked for but is not available; use --device cpu")
    return name


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@contextmanager
def quiet_libraries(deprecations: str = "") -> Iterator[None]:
    """No progress bars from transformers while a model loads or trains (hunkwise shows its
    own, and they would land in a user's terminal or the language server's log), and no
    library FutureWarnings: all of them, or only those whose message matches the regular
    expression ``deprecations``. Other warnings (missing weights ...) still show."""
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=deprecations, category=FutureWarning)
            yield
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()


def _template_texts() -> Iterator[str]:
    """The alpaca-v1 skeleton with every default instruction and the label words."""
    samples = [
        render_example(DEFAULT_INSTRUCTIONS["rnp"], "@@ -1 +1 @@\n-a\n+b", "yes", EOS),
        render_example(DEFAULT_INSTRUCTIONS["rnp"], "@@ -1 +1 @@\n-a\n+b", "no", EOS),
        render_example(DEFAULT_INSTRUCTIONS["rcg"], "@@ -1 +1 @@\n-a\n+b", "Fix this.", EOS),
        render_example(DEFAULT_INSTRUCTIONS["cr"], cr_input("Fix this.", "a"), "b", EOS),
        render_example("Rename the variable.", "", "b", EOS),
    ]
    for _ in range(_TEMPLATE_REPEATS):
        yield from samples


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 4096) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` (the repository's own mined text).

    Special tokens: ``<s>`` (BOS, prepended by ``add_special_tokens``), ``</s>`` (EOS),
    ``<pad>`` and ``<unk>``. The label words ("yes", "no") always encode to one token
    each, so RNP can be scored from one forward pass. Returns a
    ``PreTrainedTokenizerFast`` that round-trips through ``save_pretrained`` and
    ``AutoTokenizer.from_pretrained``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    minimum = len(alphabet) + len(SPECIAL_TOKENS) + 2 * len(LABEL_WORDS)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum} for a byte-level BPE")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )

    def corpus() -> Iterator[str]:
        yield from _template_texts()
        for text in texts:
            if text:
                yield text

    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    tokenizer = _with_single_token_words(tokenizer, list(LABEL_WORDS.values()))
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=TINY_CONFIG["max_position_embeddings"],
    )


def _with_single_token_words(tokenizer, words: list[str]):
    """Append BPE merges so that each word (as a pre-token) becomes exactly one token.

    Appended merges have the lowest priority, so they only join the pieces the trained
    merges leave for that word and do not change how any other text is split except
    where the same pieces meet.
    """
    from tokenizers import Tokenizer

    data = json.loads(tokenizer.to_str())
    model = data["model"]
    vocab: dict[str, int] = model["vocab"]
    merges: list = model["merges"]
    as_strings = bool(merges) and isinstance(merges[0], str)
    added_ids = [token["id"] for token in data.get("added_tokens", [])]
    next_id = max([*vocab.values(), *added_ids]) + 1
    changed = False
    for word in words:
        pieces = tokenizer.encode(word, add_special_tokens=False).tokens
        while len(pieces) > 1:
            left, right = pieces[0], pieces[1]
            joined = left + right
            merges.append(f"{left} {right}" if as_strings else [left, right])
            if joined not in vocab:
                vocab[joined] = next_id
                next_id += 1
            pieces = [joined, *pieces[2:]]
            changed = True
    if not changed:
        return tokenizer
    return Tokenizer.from_str(json.dumps(data))


def build_tiny_model(tokenizer, **overrides) -> LlamaForCausalLM:
    """A freshly initialised LLaMA-architecture model for ``tokenizer`` (the tiny preset).

    ``TINY_CONFIG`` holds the defaults; ``overrides`` replace any ``LlamaConfig`` field
    (tests use ``hidden_size=64, intermediate_size=128, num_hidden_layers=2``).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = {**TINY_CONFIG, **overrides}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **settings,
    )
    return LlamaForCausalLM(config)


def is_local_path(name: str) -> bool:
    """Whether ``name`` is meant as a path rather than a hub id (``org/model``)."""
    if Path(name).expanduser().exists():
        return True
    return (
        name.startswith(("/", ".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", name)
    )


def base_model_name(base: str) -> str:
    """How a bundle's manifest names the base it was trained on: ``bundle:base`` for the
    tiny preset (stored in the bundle), hub ids as given, local paths made absolute."""
    if base == TINY:
        return BUNDLE_BASE
    if is_local_path(base):
        return str(Path(base).expanduser().resolve())
    return base


def _offline() -> bool:
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def check_base(name: str) -> None:
    """Refuse, before any work starts, a base that cannot be loaded: ``tiny`` is always
    there; a local path must be a model directory (``config.json``); a hub id must be in the
    local hub cache when the hub is offline. Cheap: reads no weights."""
    if name == TINY:
        return
    if name == BUNDLE_BASE:
        raise HunkwiseError(
            f"base {BUNDLE_BASE!r} names the base stored in a bundle; train with --base tiny, "
            "a local model directory or a hub id"
        )
    if is_local_path(name):
        path = _model_directory(name)
        if not (path / "config.json").is_file():
            raise HunkwiseError(
                f"base model {name!r}: {path} has no config.json; give a transformers model "
                "directory (config.json, *.safetensors, tokenizer files)"
            )
        return
    if _in_hub_cache(name):
        return
    if _offline():
        raise HunkwiseError(
            f"base model {name!r} is not available locally and the hub is offline "
            f"(HF_HUB_OFFLINE): download it first (`hf download {name}`) or pass a local "
            "directory with --base"
        )
    _check_on_hub(name)


def _check_on_hub(name: str, timeout: float = 10.0) -> None:
    """One quick question to the hub (no retries) before any work starts: does it have
    ``name``? Without network this fails in seconds instead of after the mining."""
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return
    try:
        HfApi().model_info(name, timeout=timeout)
    except GatedRepoError:
        return  # it exists; loading will say what access it needs
    except RepositoryNotFoundError:
        raise HunkwiseError(
            f"base model {name!r}: no such model on the Hugging Face hub (or it is private); "
            "check the id, or pass a local directory with --base"
        ) from None
    except Exception as error:  # any network failure means the same here
        raise HunkwiseError(
            f"base model {name!r} is not in the local cache and the Hugging Face hub cannot be "
            f"reached ({first_line(error).rstrip('.')}); connect, or download it where there "
            "is network (`hf download ...`), or set HF_HUB_OFFLINE=1 and pass a local "
            "directory with --base"
        ) from None


def _model_directory(name: str) -> Path:
    """The directory a local ``--base`` names; a HunkwiseError when there is none."""
    path = Path(name).expanduser()
    if not path.is_dir():
        raise HunkwiseError(
            f"base model {name!r}: no such directory; give `tiny`, a local model directory "
            "(with config.json and *.safetensors) or a hub id such as "
            "Qwen/Qwen2.5-Coder-1.5B-Instruct"
        )
    return path


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return False
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError as error:  # the hub's own check of the id (HFValidationError)
        raise HunkwiseError(f"base model {name!r} is not a valid hub id: {error}") from None


def _base_source(name_or_path: str, bundle: Path | None) -> str:
    """Where a base is loaded from: a hub id, a local model directory, or ``bundle/base``."""
    if name_or_path == TINY:
        raise HunkwiseError(
            "the tiny preset is built, not loaded: train it with "
            "`hunkwise train --base tiny` and load the bundle it writes"
        )
    if name_or_path == BUNDLE_BASE:
        if bundle is None:
            raise HunkwiseError(f"base {BUNDLE_BASE!r} needs the bundle it belongs to")
        source = str(Path(bundle) / "base")
        if not Path(source).is_dir():
            raise HunkwiseError(
                f"bundle {bundle} has no base/ directory; "
                "retrain it with `hunkwise train-from-repo`"
            )
        return source
    if is_local_path(name_or_path):
        return str(_model_directory(name_or_path))
    return name_or_path


def load_tokenizer(
    name_or_path: str, bundle: Path | None = None
) -> tuple[PreTrainedTokenizerBase, int | None]:
    """A base's tokenizer, as :func:`load_base` loads it (with a pad token), and its
    context length (``max_position_embeddings``), without its weights: what a client of
    a remote engine needs of the base."""
    from transformers import AutoConfig, AutoTokenizer

    source = _base_source(name_or_path, bundle)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise _load_error(name_or_path, source, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, getattr(config, "max_position_embeddings", None)


def load_base(
    name_or_path: str, device: str = "auto", bundle: Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a base causal LM and its tokenizer, in eval mode on ``device``.

    ``name_or_path`` is a hub id (``Qwen/Qwen2.5-Coder-1.5B-Instruct``), a local
    directory, or ``bundle:base`` (``bundle/base``, where the tiny preset is stored).
    Safetensors only, no remote code; bf16 on CUDA (fp16 on GPUs without bf16), fp32
    elsewhere. The tokenizer always
    has a pad token (EOS when the model defines none).
    """
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _base_source(name_or_path, bundle)
    resolved = resolve_device(device)
    dtype = torch.float32
    if resolved.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, use_safetensors=True, trust_remote_code=False
        )
    except (OSError, ValueError, SafetensorError) as error:
        raise _load_error(name_or_path, source, error) from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(resolved)
    model.eval()
    return model, tokenizer


def _load_error(name: str, source: str, error: Exception) -> HunkwiseError:
    detail = first_line(error).rstrip(".")
    if Path(source).is_dir():
        return HunkwiseError(
            f"cannot load base model from {source}: {detail}. hunkwise loads only "
            "safetensors weights and no remote code; check that the directory holds a "
            "transformers causal LM (config.json, *.safetensors, tokenizer files)"
        )
    if _offline():
        return HunkwiseError(
            f"base model {name!r} is not available locally and the hub is offline "
            "(HF_HUB_OFFLINE): download it first (`hf download "
            f"{name}`) or pass a local directory with --base"
        )
    return HunkwiseError(
        f"cannot load base model {name!r} from the Hugging Face hub: {detail}. Check the "
        "id and your network; without network the model must be available locally "
        "(in the hub cache or as a directory passed with --base)"
    )
