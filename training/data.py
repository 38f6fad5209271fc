"""Records -> token ids for training: alpaca-v1 prompts (the input cut in the middle when
too long), labels with the prompt masked out of the loss, the tokenised training set as a
cached Arrow ``datasets.Dataset``, and the batch collators.

:func:`encode_prompt` is also what the engine feeds the model at inference, so training and
serving see identical prompts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import HunkwiseError
from training.mining.dataset import read_split
from training.tasks import INSTRUCT, Record, render_prompt

if TYPE_CHECKING:
    from datasets import Dataset
    from rich.console import Console

#: Labels equal to this are left out of the loss (PyTorch's cross-entropy default).
IGNORE_INDEX = -100
#: Put between the head and the tail of an input that was cut to fit.
CUT_MARKER = "\n...\n"
# Stands for the input while the template around it is tokenised on its own.
_INPUT_SLOT = "\x00hunkwise-input\x00"
#: Part of every cached set's fingerprint: raise it when :func:`encode_record` (or the
#: template) changes what a record encodes to, so that no stale set is reused.
ENCODING_VERSION = 2
#: The columns the Trainer gets. Not ``length``: the Trainer's length-grouped sampler would
#: read it through datasets' lazy ``Column`` one row at a time, every epoch (3.9 s an epoch
#: for 11.8k rows), where it reads ``input_ids`` once (1.1 s).
TRAINER_COLUMNS = ("input_ids", "labels")


def _ids(tokenizer, text: str) -> list[int]:
    return (
        list(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]) if text else []
    )


def bos_ids(tokenizer) -> list[int]:
    """``[bos_token_id]`` when the tokenizer prepends BOS to a text (LLaMA), else ``[]`` (Qwen)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    with_special = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    return [bos] if with_special[:1] == [bos] else []


def _encode_prompt(
    tokenizer, instruction: str, input: str, max_prompt_tokens: int
) -> tuple[list[int], bool]:
    _, ids, cut = _fit_prompt(tokenizer, instruction, input, max_prompt_tokens)
    return ids, cut


def _fit_prompt(
    tokenizer, instruction: str, input: str, max_prompt_tokens: int
) -> tuple[str, list[int], bool]:
    """The input as the prompt holds it (cut in the middle when the prompt is over
    ``max_prompt_tokens``), the prompt's ids (BOS first), and whether it was cut."""
    prefix = bos_ids(tokenizer)
    ids = prefix + _ids(tokenizer, render_prompt(instruction, input))
    if len(ids) <= max_prompt_tokens or not input:
        return input, ids, False
    cut, cut_ids = _cut_input(tokenizer, instruction, input, max_prompt_tokens - len(prefix))
    return cut, prefix + cut_ids, True


def _cut_input(tokenizer, instruction: str, input: str, budget: int) -> tuple[str, list[int]]:
    """The input cut in the middle so that the prompt fits ``budget`` tokens where the
    template allows: its first and last tokens, decoded back to text, with
    :data:`CUT_MARKER` between them; and the ids of the prompt holding it. The cut prompt
    is that text, tokenised whole, so an engine that tokenises the prompt's text itself (a
    remote one) runs the same ids."""
    before_text, after_text = render_prompt(instruction, _INPUT_SLOT).split(_INPUT_SLOT)
    template = len(_ids(tokenizer, before_text)) + len(_ids(tokenizer, after_text))
    body = _ids(tokenizer, input)
    room = max(0, budget - template - len(_ids(tokenizer, CUT_MARKER)))
    while True:
        head = body[: (room + 1) // 2]
        tail = body[len(body) - room // 2 :]
        text = tokenizer.decode(head) + CUT_MARKER + tokenizer.decode(tail)
        # Tokens merge across the joins once the text is tokenised whole: a few more or
        # fewer than counted. Shrink until it fits.
        ids = _ids(tokenizer, render_prompt(instruction, text))
        if len(ids) <= budget or room == 0:
            return text, ids
        room = max(0, room - (len(ids) - budget))


def prompt_text(
    tokenizer, instruction: str, input: str, max_prompt_tokens: int
) -> tuple[str, bool]:
    """The prompt as text, for an engine that tokenises it itself (a remote one): the
    alpaca-v1 prompt, its input cut as :func:`encode_prompt` cuts it, and whether it was
    cut. No BOS: the engine's tokenizer adds it. Tokenised, it is :func:`encode_prompt`'s
    ids exactly."""
    text, _, cut = _fit_prompt(tokenizer, instruction, input, max_prompt_tokens)
    return render_prompt(instruction, text), cut


def encode_prompt(tokenizer, instruction: str, input: str, max_prompt_tokens: int) -> list[int]:
    """Token ids of the alpaca-v1 prompt (up to ``### Response:\\n``), BOS first if the
    tokenizer uses one.

    When the prompt is longer than ``max_prompt_tokens`` the *input* is cut in the middle:
    its head and tail are kept with :data:`CUT_MARKER` between them. The instruction and
    the ``### Response:`` part are never cut, so a prompt whose instruction alone does not
    fit is returned longer than ``max_prompt_tokens``.
    """
    return _encode_prompt(tokenizer, instruction, input, max_prompt_tokens)[0]


@dataclass(frozen=True)
class Example:
    """One tokenised record: the prompt's labels are :data:`IGNORE_INDEX`."""

    input_ids: list[int]
    labels: list[int]
    #: The input was cut in the middle to fit ``max_length``.
    input_cut: bool = False
    #: The response alone was too long: its head was kept, without EOS.
    response_cut: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)

    def features(self) -> dict[str, list[int]]:
        return {"input_ids": self.input_ids, "labels": self.labels}


def encode_record(record: Record, tokenizer, max_length: int) -> Example:
    """Prompt + response + EOS as ids, with the loss on the response (and EOS) only.

    The response is kept whole; the prompt gets what is left of ``max_length`` (its input
    cut in the middle, see :func:`encode_prompt`). Only a response so long that it would
    not leave the prompt its reserve (the whole prompt, or a quarter of ``max_length`` but
    at least the instruction and template) is cut: its head is kept, EOS dropped, and
    ``response_cut`` says so. An example can still be longer than ``max_length`` when the
    instruction alone does not fit; :func:`encode_records` drops those.
    """
    if tokenizer.eos_token_id is None:
        raise HunkwiseError("the tokenizer has no EOS token; hunkwise needs one to end responses")
    instruction, input = record.instruction, record.input
    response = [*_ids(tokenizer, record.output), tokenizer.eos_token_id]
    prompt, input_cut = _encode_prompt(tokenizer, instruction, input, max_length - len(response))
    response_cut = False
    if len(prompt) + len(response) > max_length:
        floor = len(_encode_prompt(tokenizer, instruction, input, 0)[0])
        whole = len(bos_ids(tokenizer)) + len(_ids(tokenizer, render_prompt(instruction, input)))
        reserve = min(whole, max(floor, max_length // 4))
        if len(response) > max_length - reserve:
            response = response[: max(0, max_length - reserve)]
            response_cut = True
            prompt, input_cut = _encode_prompt(
                tokenizer, instruction, input, max_length - len(response)
            )
    return Example(
        input_ids=prompt + response,
        labels=[IGNORE_INDEX] * len(prompt) + response,
        input_cut=input_cut,
        response_cut=response_cut,
    )


@dataclass
class EncodeStats:
    """What :func:`encode_records` had to do to fit records into ``max_length``."""

    records: int = 0
    examples: int = 0
    input_cut: int = 0
    response_cut: int = 0
    too_long: int = 0
    tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _fits(example: Example, max_length: int) -> bool:
    # Too long: its instruction alone does not fit; no label: nothing left to learn.
    return len(example) <= max_length and any(label != IGNORE_INDEX for label in example.labels)


def encode_records(
    records: Iterable[Record], tokenizer, max_length: int
) -> tuple[list[Example], EncodeStats]:
    """Encode every record, in memory; those still longer than ``max_length`` (an
    instruction that alone does not fit) or left without any response token are dropped
    and counted. Training uses :func:`encode_dataset`, which keeps the result on disk."""
    examples: list[Example] = []
    stats = EncodeStats()
    for record in records:
        stats.records += 1
        example = encode_record(record, tokenizer, max_length)
        if not _fits(example, max_length):
            stats.too_long += 1
            continue
        stats.input_cut += example.input_cut
        stats.response_cut += example.response_cut
        stats.tokens += len(example)
        examples.append(example)
    stats.examples = len(examples)
    return examples, stats


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of what decides a tokenizer's ids: its ``tokenizer.json`` (vocabulary, merges,
    normalizer, added tokens, post-processor) for a fast tokenizer, else its vocabulary, and
    its special tokens. Padding and truncation are left out: calls switch them on and off."""
    digest = hashlib.blake2b(digest_size=16)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("padding", None)
        state.pop("truncation", None)
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = [tokenizer.bos_token_id, tokenizer.eos_token_id, bos_ids(tokenizer)]
    digest.update(json.dumps(specials).encode())
    return digest.hexdigest()


def encoding_fingerprint(records: Sequence[Record], tokenizer, max_length: int) -> str:
    """What names an encoded set: a hash of :data:`ENCODING_VERSION`, ``max_length``, the
    tokenizer and every record's task, instruction, input and output, in order. (Record ids
    would not do: they leave the output out, and the output is what the labels are.)"""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"hunkwise-encoding-{ENCODING_VERSION}-{max_length}-".encode())
    digest.update(tokenizer_fingerprint(tokenizer).encode())
    for record in records:
        for part in (record.task, record.instruction, record.input, record.output):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def _encoded_features():
    from datasets import Features, List, Value

    return Features(
        {
            "input_ids": List(Value("int32")),
            "labels": List(Value("int32")),
            "length": Value("int32"),
            "input_cut": Value("bool"),
            "response_cut": Value("bool"),
        }
    )


def encode_classification(record: Record, tokenizer, max_prompt_tokens: int) -> Example:
    """A review-necessity record as the rnp adapter is trained (:mod:`training.rnp`): the
    prompt exactly as the engine encodes it for scoring, and one label, 1 for "yes" and 0
    for "no" (a class, not a token id)."""
    prompt, input_cut = _encode_prompt(
        tokenizer, record.instruction, record.input, max_prompt_tokens
    )
    return Example(input_ids=prompt, labels=[int(record.output == "yes")], input_cut=input_cut)


def _encode_batch(
    batch: dict[str, list], tokenizer, max_length: int, prompt_budget: int | None = None
) -> dict[str, list]:
    """``Dataset.map``'s function: :func:`encode_record` on each row (or, with
    ``prompt_budget``, :func:`encode_classification`), the rows that do not fit left out (a
    batched map may return fewer rows than it was given)."""
    encoded: dict[str, list] = {name: [] for name in _encoded_features()}
    columns = ("task", "id", "instruction", "input", "output")
    for row in zip(*(batch[column] for column in columns), strict=True):
        record = Record(**dict(zip(columns, row, strict=True)))
        if prompt_budget is not None:
            example = encode_classification(record, tokenizer, prompt_budget)
            if len(example) > prompt_budget:  # an instruction that alone does not fit
                continue
        else:
            example = encode_record(record, tokenizer, max_length)
            if not _fits(example, max_length):
                continue
        encoded["input_ids"].append(example.input_ids)
        encoded["labels"].append(example.labels)
        encoded["length"].append(len(example))
        encoded["input_cut"].append(example.input_cut)
        encoded["response_cut"].append(example.response_cut)
    return encoded


@contextmanager
def _no_datasets_progress() -> Iterator[None]:
    """datasets' tqdm bars off while encoding (hunkwise shows its own progress), unless
    ``HF_DATASETS_DISABLE_PROGRESS_BARS`` says otherwise."""
    import datasets

    if datasets.are_progress_bars_disabled() or (
        datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is not None
    ):
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def encode_dataset(
    records: Sequence[Record],
    tokenizer,
    max_length: int,
    cache_dir: Path | None = None,
    *,
    prompt_budget: int | None = None,
) -> tuple[Dataset, EncodeStats]:
    """The records tokenised into a ``datasets.Dataset`` with :data:`TRAINER_COLUMNS`, each
    row what :func:`encode_record` makes of a record; rows that do not fit are dropped and
    counted, as by :func:`encode_records`.

    With ``cache_dir`` the set is written there, and only there, as
    ``encoded-<fingerprint>.arrow`` (:func:`encoding_fingerprint`) and memory-mapped; a
    later call with the same records, tokenizer and ``max_length`` maps that file instead
    of tokenising again. Without it the set is built in memory. ``prompt_budget`` encodes
    review-necessity records for the rnp classifier instead (:func:`encode_classification`).
    """
    from datasets import Dataset

    features = _encoded_features()
    if not records:
        encoded = Dataset.from_dict({name: [] for name in features}, features=features)
    else:
        source = Dataset.from_dict(
            {
                "task": [record.task for record in records],
                "id": [record.id for record in records],
                "instruction": [record.instruction for record in records],
                "input": [record.input for record in records],
                "output": [record.output for record in records],
            }
        )
        if cache_dir is None:
            cache_file, fingerprint = None, "in-memory"
        else:
            fingerprint = encoding_fingerprint(records, tokenizer, max_length)
            if prompt_budget is not None:
                fingerprint = f"rnp{prompt_budget}-{fingerprint}"
            cache_file = str(Path(cache_dir) / f"encoded-{fingerprint}.arrow")
        with _no_datasets_progress():
            encoded = source.map(
                _encode_batch,
                batched=True,
                fn_kwargs={
                    "tokenizer": tokenizer,
                    "max_length": max_length,
                    "prompt_budget": prompt_budget,
                },
                remove_columns=source.column_names,
                features=features,
                keep_in_memory=cache_file is None,
                cache_file_name=cache_file,
                load_from_cache_file=True,
                # Given, so that datasets neither hashes the tokenizer nor picks a random one.
                new_fingerprint=fingerprint,
            )
    table = encoded.data
    stats = EncodeStats(
        records=len(records),
        examples=len(encoded),
        input_cut=table.column("input_cut").to_pylist().count(True),
        response_cut=table.column("response_cut").to_pylist().count(True),
        too_long=len(records) - len(encoded),
        tokens=sum(table.column("length").to_pylist()),
    )
    return encoded.select_columns(list(TRAINER_COLUMNS)), stats


def left_pad(tokenizer, prompts: Sequence[Sequence[int]]):
    """``(input_ids, attention_mask)`` of prompts padded on the left to one width by
    ``tokenizer.pad`` (with its pad token: the loaders give EOS to a tokenizer without
    one), as the engine runs them (the last column is every row's last token)."""
    batch = tokenizer.pad(
        {"input_ids": [list(ids) for ids in prompts]},
        padding=True,
        padding_side="left",
        return_attention_mask=True,
        return_tensors="pt",
    )
    return batch["input_ids"], batch["attention_mask"]


def real_positions(attention_mask):
    """Position ids that count real tokens only: left padding shifts every row's tokens,
    and with these a padded row computes exactly what it would alone."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


@dataclass
class PaddingCollator:
    """Right-pads a batch (labels with :data:`IGNORE_INDEX`) and adds the attention mask.

    Used with the Trainer's length-grouped sampler, so a batch holds similar lengths and
    little padding: the CPU path, where attention over a packed row costs more than padding.
    """

    tokenizer: Any
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        # The tokenizer pads the inputs (on the right, whatever side it pads by default);
        # the labels follow, as transformers' DataCollatorForSeq2Seq pads them.
        batch = self.tokenizer.pad(
            [{"input_ids": feature["input_ids"]} for feature in features],
            padding=True,
            padding_side="right",
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_attention_mask=True,
            return_tensors="pt",
        )
        width = batch["input_ids"].shape[1]
        labels = [
            list(feature["labels"]) + [IGNORE_INDEX] * (width - len(feature["labels"]))
            for feature in features
        ]
        return {
            "input_ids": batch["input_ids"],
            "labels": torch.tensor(labels, dtype=torch.long),
            "attention_mask": batch["attention_mask"],
        }


@dataclass
class PackingCollator:
    """Padding-free batches: the examples are concatenated into one row, with position ids
    restarting at 0 for each (transformers' ``DataCollatorWithFlattening``), so attention
    never crosses examples and no compute goes to padding. The GPU path."""

    _flatten: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from transformers import DataCollatorWithFlattening

        self._flatten = DataCollatorWithFlattening(
            return_position_ids=True, separator_id=IGNORE_INDEX
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        return self._flatten(features)


def make_collator(tokenizer, packed: bool) -> PaddingCollator | PackingCollator:
    """The packing collator (GPU) or the padding one (CPU)."""
    return PackingCollator() if packed else PaddingCollator(tokenizer)


def read_instruct_data(path: Path, console: Console | None = None) -> list[Record]:
    """Stage-1 instruction data as ``instruct`` records.

    ``path`` is an Alpaca / Code Alpaca file (a JSON list or JSONL of objects with
    ``instruction``, ``input`` and ``output``), read as ``hunkwise import alpaca`` reads it
    (:func:`training.mining.importers.alpaca_records`: malformed rows skipped, counted and
    logged to ``console``), or a dataset directory written by ``hunkwise import alpaca``
    (its ``instruct/train.jsonl``).
    """
    from training.mining.importers import import_file

    path = Path(path)
    if path.is_dir():
        records = read_split(path, INSTRUCT, "train")
        if not records:
            raise HunkwiseError(f"{path} has no {INSTRUCT}/train.jsonl records for stage 1")
        return records
    if not path.is_file():
        raise HunkwiseError(f"stage-1 data {path} does not exist")
    _, records = import_file("alpaca", path, console, progress=False)
    return records
