"""Training the review-necessity adapter the way the engine serves it.

The engine scores a hunk with one forward pass: the logits of the first tokens of "yes" and
"no" at the response position of the left-padded prompt (docs/architecture.md, section 2).
The rnp adapter is trained on exactly that: prompts encoded as the engine encodes them
(:func:`training.data.encode_prompt` with the bundle's prompt budget), left padding, the
last position only (``logits_to_keep=1``, so the LM head runs once per hunk instead of once
per token), and a cross-entropy over the two label logits weighted by class, so that every
labelled hunk of a history that is 3% "yes" can be used without the model learning to say
"no" to everything.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from training.data import EncodeStats, encode_prompt
from training.tasks import LABEL_YES, Record


def prompt_budget(max_length: int) -> int:
    """The prompt tokens a bundle trained with ``max_length`` serves (the manifest's
    ``max_prompt_tokens``): a quarter of the length is left to responses."""
    return max_length - max(1, max_length // 4)


def encode_rnp(
    records: Iterable[Record], tokenizer, max_prompt_tokens: int
) -> tuple[list[dict[str, Any]], EncodeStats]:
    """``{"input_ids": prompt, "labels": 1 | 0}`` per record, the prompt exactly as
    :meth:`training.engine.Engine.encode` builds it."""
    examples: list[dict[str, Any]] = []
    stats = EncodeStats()
    for record in records:
        stats.records += 1
        ids = encode_prompt(tokenizer, record.instruction, record.input, max_prompt_tokens)
        if len(ids) > max_prompt_tokens:  # an instruction that alone does not fit
            stats.too_long += 1
            continue
        full = len(tokenizer(record.input, add_special_tokens=False)["input_ids"])
        stats.input_cut += full > len(ids)
        stats.tokens += len(ids)
        examples.append({"input_ids": ids, "labels": int(record.output == LABEL_YES)})
    stats.examples = len(examples)
    return examples, stats


class ListDataset:
    """A map-style dataset over prepared feature dicts."""

    def __init__(self, items: Sequence[dict[str, Any]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


@dataclass
class LeftPaddingCollator:
    """Left-padded prompts with position ids counting real tokens only (as the engine
    runs them), and ``logits_to_keep=1`` for the model call."""

    pad_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, feature in enumerate(features):
            ids = feature["input_ids"]
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": (attention_mask.cumsum(-1) - 1).clamp(min=0),
            "labels": torch.tensor([int(f["labels"]) for f in features], dtype=torch.long),
            "logits_to_keep": 1,
        }


def class_weights(labels: Iterable[int]) -> tuple[float, float]:
    """(weight of "no", weight of "yes"), balanced: each class weighs half of the loss.
    A class that is absent gets weight 1."""
    counts = Counter(int(label) for label in labels)
    total = sum(counts.values())
    return tuple(  # type: ignore[return-value]
        total / (2 * counts[c]) if counts[c] else 1.0 for c in (0, 1)
    )


def pair_loss(yes_id: int, no_id: int, weights: tuple[float, float]):
    """A ``compute_loss_func`` for the Trainer: weighted cross-entropy over the ("no",
    "yes") logits at the last position, averaged over the batch's items."""

    def compute(outputs, labels, num_items_in_batch=None):
        import torch

        last = outputs.logits[:, -1, :]
        pair = torch.stack([last[:, no_id], last[:, yes_id]], dim=-1).float()
        weight = torch.tensor(weights, dtype=pair.dtype, device=pair.device)
        losses = torch.nn.functional.cross_entropy(pair, labels, weight=weight, reduction="none")
        count = num_items_in_batch if num_items_in_batch is not None else len(labels)
        if isinstance(count, torch.Tensor):
            count = count.to(losses.device)
        return losses.sum() / count

    return compute
