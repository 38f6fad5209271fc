"""The tiny preset (tokenizer and model built from scratch) and base loading through the
real transformers code paths, on local directories only (no hub access)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import torch

from tests.model_sizes import SMALL_MODEL
from training.config import RepoConfig
from training.errors import HunkwiseError
from training.models import (
    TINY,
    build_tiny_model,
    build_tiny_tokenizer,
    device_name,
    load_base,
    resolve_device,
)
from training.tasks import DEFAULT_INSTRUCTIONS, RNP, render_prompt

CORPUS = [
    "@@ -1,3 +1,3 @@\n def total(items):\n-    return sum(items)\n+    return sum(items) + 1\n",
    "Fix the off-by-one error in the parser.",
    "Comment: Rename this.\nCode:\nvalue = compute(x)\n",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(CORPUS, vocab_size=512)


@pytest.fixture(scope="module")
def saved_base(tmp_path_factory, tokenizer) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("base")
    model = build_tiny_model(tokenizer, **SMALL_MODEL)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_label_words_are_single_tokens(tokenizer):
    for word in ("yes", "no"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1


def test_label_words_single_even_when_the_corpus_lacks_them():
    tokenizer = build_tiny_tokenizer(["zzz qqq"] * 3, vocab_size=400)
    for word in ("yes", "no"):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1
        assert tokenizer.decode(ids) == word


def test_template_pieces_tokenise_compactly(tokenizer):
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    assert count("### Response:\n") <= 4
    assert count("### Instruction:\n") <= 4
    assert count(DEFAULT_INSTRUCTIONS[RNP]) <= 30
    prompt = render_prompt(DEFAULT_INSTRUCTIONS[RNP], CORPUS[0])
    assert tokenizer.decode(tokenizer(prompt, add_special_tokens=False)["input_ids"]) == prompt


def test_special_tokens(tokenizer):
    ids = tokenizer("x = 1")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    specials = {
        tokenizer.bos_token_id,
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
        tokenizer.unk_token_id,
    }
    assert None not in specials and len(specials) == 4
    assert tokenizer.convert_ids_to_tokens(tokenizer.eos_token_id) == "</s>"


def test_tokenizer_round_trips_through_auto_tokenizer(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in [*CORPUS[:3], "yes", "no"]:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.pad_token == "<pad>" and loaded.eos_token == "</s>"


def test_tiny_model_shapes_and_overrides(tokenizer):
    model = build_tiny_model(tokenizer, **SMALL_MODEL)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.num_hidden_layers == 2
    assert model.config.tie_word_embeddings
    assert model.config.pad_token_id == tokenizer.pad_token_id
    ids = torch.tensor([tokenizer("def f(): pass")["input_ids"]])
    out = model(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(out.loss)


def test_load_base_from_local_directory(saved_base, tokenizer):
    model, loaded = load_base(str(saved_base), device="cpu")
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert loaded("yes")["input_ids"] == tokenizer("yes")["input_ids"]
    reference = build_tiny_model(tokenizer, **SMALL_MODEL)
    reference.load_state_dict(model.state_dict())
    ids = torch.tensor([tokenizer("x = 1")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reference.eval()(ids).logits)


def test_load_base_from_bundle(saved_base, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "base").symlink_to(saved_base, target_is_directory=True)
    model, _ = load_base("bundle:base", device="cpu", bundle=bundle)
    assert model.config.num_hidden_layers == 2
    with pytest.raises(HunkwiseError, match="no base/"):
        load_base("bundle:base", device="cpu", bundle=tmp_path)


def test_load_base_sets_a_missing_pad_token(tokenizer, tmp_path):
    model = build_tiny_model(tokenizer, **SMALL_MODEL)
    model.config.pad_token_id = None
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = tmp_path / "tokenizer_config.json"
    config.write_text(config.read_text().replace('"pad_token": "<pad>",', ""))
    _, loaded = load_base(str(tmp_path), device="cpu")
    assert loaded.pad_token == loaded.eos_token == "</s>"


@pytest.mark.parametrize("name", ["./no/such/model", "/no/such/model", "~/no/such/model"])
def test_load_base_missing_path(name):
    with pytest.raises(HunkwiseError, match="no such directory"):
        load_base(name, device="cpu")


def test_load_base_directory_without_weights(tmp_path, tokenizer):
    build_tiny_model(tokenizer, **SMALL_MODEL).config.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(HunkwiseError, match="safetensors"):
        load_base(str(tmp_path), device="cpu")


def test_load_base_unknown_hub_id_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HunkwiseError, match="not available locally"):
        load_base("hunkwise-tests/no-such-model", device="cpu")


def test_tiny_is_built_not_loaded():
    with pytest.raises(HunkwiseError, match="hunkwise train --base tiny"):
        load_base(TINY)


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(HunkwiseError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(HunkwiseError, match="no CUDA"):
            resolve_device("cuda")


DEVICES_TAKEN = {"auto": "auto", " CPU ": "cpu", "cuda": "cuda", "Cuda:1": "cuda:1", "mps": "mps"}
DEVICES_REFUSED = ["tpu", "xpu", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "auto:0", "", 3]


def _cli_device(command: str, value) -> str | None:
    """What the command line makes of ``--device value`` (None: refused), parsing only."""
    from training.cli import main

    required = {
        "train": ["--data", "d", "--base", "tiny", "--out", "b"],
        "train-from-repo": ["--base", "tiny"],
        "eval": ["--bundle", "b"],
        "review": [],
    }[command]
    try:
        context = main.commands[command].make_context(command, [*required, "--device", value])
    except click.BadParameter:
        return None
    return context.params["device"]


def _config_device(value) -> str | None:
    try:
        return RepoConfig({"device": value}).checked()["device"]
    except HunkwiseError:
        return None


@pytest.mark.parametrize("value", [*DEVICES_TAKEN, *DEVICES_REFUSED])
def test_one_device_rule_for_options_settings_and_the_engine(value):
    expected = DEVICES_TAKEN.get(value)
    assert (device_name(value) if expected else None) == expected
    if expected is None:
        with pytest.raises(ValueError, match="auto, cpu, cuda, cuda:N or mps"):
            device_name(value)
    # The configuration file (and the language server's settings, which convert alike).
    assert _config_device(value) == expected
    # Every command that takes --device (a shell passes text, never the number).
    if isinstance(value, str):
        for command in ("train", "train-from-repo", "eval", "review"):
            assert _cli_device(command, value) == expected, command
    # What loads a model (train_bundle, the engine): refused as unknown, or resolved.
    if value and expected is None:
        with pytest.raises(HunkwiseError, match="unknown device"):
            resolve_device(value)
    elif expected in ("auto", "cpu"):
        assert resolve_device(value) in ("cpu", "cuda", "mps")
