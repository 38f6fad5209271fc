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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from training.data import left_pad, real_positions
from training.errors import HunkwiseError
from training.tasks import LABEL_WORDS


def prompt_budget(max_length: int) -> int:
    """The prompt tokens a bundle trained with ``max_length`` serves (the manifest's
    ``max_prompt_tokens``): a quarter of the length is left to responses."""
    return max_length - max(1, max_length // 4)


def rnp_prompt_tokens(setting: int | None, max_length: int) -> int:
    """The prompt tokens of an rnp example for the ``rnp_prompt_tokens`` option (0 or None:
    the bundle's whole prompt budget), never more than that budget."""
    return min(setting or max_length, prompt_budget(max_length))


def label_token_ids(tokenizer, words: dict[str, str] | None = None) -> tuple[int, int]:
    """The first tokens of the "yes" and "no" label words, as the engine reads them."""
    words = words or LABEL_WORDS
    ids = []
    for key in ("yes", "no"):
        word = words.get(key)
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"] if word else []
        if not tokens:
            raise HunkwiseError(f"no usable {key!r} label word ({word!r})")
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise HunkwiseError(
            "the label words start with the same token; review necessity cannot be scored"
        )
    return ids[0], ids[1]


@dataclass
class LeftPaddingCollator:
    """Left-padded prompts with position ids counting real tokens only (as the engine
    runs them), and ``logits_to_keep=1`` for the model call."""

    tokenizer: Any

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        input_ids, attention_mask = left_pad(self.tokenizer, [f["input_ids"] for f in features])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": real_positions(attention_mask),
            "labels": torch.tensor([_label(f["labels"]) for f in features], dtype=torch.long),
            "logits_to_keep": 1,
        }


def _label(value) -> int:
    # A row of an encoded dataset holds its class as a one-element list.
    return int(value[0] if isinstance(value, (list, tuple)) else value)


def class_weights(labels: Iterable[int]) -> tuple[float, float]:
    """(weight of "no", weight of "yes"), balanced: each class weighs half of the loss.
    With one class only there is nothing to balance: (1, 1)."""
    counts = Counter(int(label) for label in labels)
    total = sum(counts.values())
    if not (counts[0] and counts[1]):
        return 1.0, 1.0
    return total / (2 * counts[0]), total / (2 * counts[1])


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
