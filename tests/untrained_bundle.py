"""Sample hunks, and a STAND-IN for a trained bundle built from them in seconds: a tiny
random LLaMA with random LoRA adapters, for the tests of the engine, the review and the
bundle format that need a real model but not a trained one."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from tests.model_sizes import SMALL_MODEL
from training.hunks import Hunk
from training.models import build_tiny_model, build_tiny_tokenizer
from training.tasks import ADAPTER_TASKS, LABEL_WORDS, TEMPLATE_NAME

HUNKS = [
    Hunk("src/app.py", 3, 2, 3, 3, (" x = 1", "-y = 2", "+y = 3", "+z = y * 2")),
    Hunk("src/app.py", 40, 1, 41, 1, ("-    return None", "+    return value")),
    Hunk(
        "lib/util.py",
        10,
        6,
        10,
        9,
        (
            " def parse(text):",
            "     parts = text.split(',')",
            "+    if not parts:",
            "+        raise ValueError('empty')",
            "+    # keep order",
            "     return [p.strip() for p in parts]",
            " ",
            " ",
            " def render(items):",
        ),
    ),
    Hunk("README.md", 1, 1, 1, 1, ("-# Old title", "+# New title")),
    Hunk("setup.cfg", 7, 3, 7, 2, (" [tool]", "-debug = true", " name = x")),
]

#: The tokenizer's training text: the hunks, and two review comments.
_CORPUS = [hunk.text for hunk in HUNKS] * 4 + [
    "Fix the off-by-one error in the parser.",
    "Rename the variable to something clearer.",
]


def build_stand_in_bundle(path: Path, stage1: bool = True) -> Path:
    """A STAND-IN for a trained bundle, built without training: a tiny random LLaMA and a
    small BPE tokenizer in base/, random (not zero-initialised, so they differ from the base
    and from each other) but real peft LoRA adapters saved with ``save_pretrained``, and a
    manifest as the contract describes. Real trained bundles come from ``hunkwise train``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer(_CORPUS, vocab_size=400)
    base = build_tiny_model(
        tokenizer,
        **SMALL_MODEL,
        max_position_embeddings=512,
    )
    base.save_pretrained(path / "base")
    tokenizer.save_pretrained(path / "base")
    adapters = ["stage1", *ADAPTER_TASKS] if stage1 else list(ADAPTER_TASKS)
    for seed, name in enumerate(adapters, start=1):
        torch.manual_seed(seed)
        config = LoraConfig(
            r=4,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        )
        get_peft_model(copy.deepcopy(base), config).save_pretrained(path / name)
    manifest = {
        "format": "hunkwise-bundle/1",
        "base_model": "bundle:base",
        "template": TEMPLATE_NAME,
        "stage1": "stage1" if stage1 else None,
        "tasks": {task: task for task in ADAPTER_TASKS},
        "label_words": dict(LABEL_WORDS),
        "created": "2024-01-01T00:00:00+00:00",
        "training": {"stand_in": True},
        "metrics": {},
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path
