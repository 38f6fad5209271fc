"""Records -> examples: golden checks of the loss mask, middle truncation of long inputs,
the collators (packing keeps examples apart), and stage-1 data reading."""

from __future__ import annotations

import json

import pytest
import torch

from training.data import (
    CUT_MARKER,
    IGNORE_INDEX,
    PackingCollator,
    PaddingCollator,
    encode_prompt,
    encode_record,
    encode_records,
    read_instruct_data,
)
from training.errors import HunkwiseError
from training.models import build_tiny_model, build_tiny_tokenizer
from training.tasks import INSTRUCT, RCG, RNP, Record, RecordMeta, render_prompt

HUNK = "@@ -1,3 +1,3 @@\n def total(items):\n-    return sum(items)\n+    return sum(items) + 1\n"
LONG_HUNK = "@@ -1,200 +1,200 @@\n" + "".join(f"+line_{i} = compute({i})\n" for i in range(200))


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer([HUNK * 3, LONG_HUNK, "Use a clearer name."] * 5, vocab_size=600)


def _record(task: str = RCG, input: str = HUNK, output: str = "Use a clearer name.") -> Record:
    return Record.make(task, input, output, RecordMeta())


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


def test_labels_are_exactly_the_response_and_eos(tokenizer):
    record = _record()
    example = encode_record(record, tokenizer, max_length=512)
    kept = [label for label in example.labels if label != IGNORE_INDEX]
    assert _decode(tokenizer, kept) == record.output + tokenizer.eos_token
    masked = example.labels.index(kept[0])
    assert all(label == IGNORE_INDEX for label in example.labels[:masked])
    assert example.input_ids[masked:] == kept
    assert _decode(tokenizer, example.input_ids[:masked]) == tokenizer.bos_token + record.prompt
    assert not example.input_cut and not example.response_cut


def test_training_prompt_is_the_serving_prompt(tokenizer):
    record = _record(RNP, output="yes")
    example = encode_record(record, tokenizer, max_length=512)
    prompt = encode_prompt(tokenizer, record.instruction, record.input, 512 - 2)
    assert example.input_ids[: len(prompt)] == prompt
    assert example.labels[len(prompt) :] == [
        tokenizer.convert_tokens_to_ids("yes"),
        tokenizer.eos_token_id,
    ]


def test_middle_truncation_keeps_instruction_response_head_and_tail(tokenizer):
    record = _record(input=LONG_HUNK, output="Split this function.")
    example = encode_record(record, tokenizer, max_length=160)
    assert len(example) <= 160 and example.input_cut
    kept = [label for label in example.labels if label != IGNORE_INDEX]
    assert _decode(tokenizer, kept) == record.output + tokenizer.eos_token
    text = _decode(tokenizer, example.input_ids)
    before, after = render_prompt(record.instruction, "\x00").split("\x00")
    assert text.startswith(tokenizer.bos_token + before + "@@ -1,200 +1,200 @@\n+line_0")
    assert CUT_MARKER in text
    assert "line_199 = compute(199)\n" + after + record.output in text
    assert "line_100 " not in text


def test_encode_prompt_fits_or_is_whole(tokenizer):
    short = encode_prompt(tokenizer, "Fix it.", HUNK, 10_000)
    assert _decode(tokenizer, short) == tokenizer.bos_token + render_prompt("Fix it.", HUNK)
    cut = encode_prompt(tokenizer, "Fix it.", LONG_HUNK, 120)
    assert len(cut) <= 120
    assert _decode(tokenizer, cut).endswith("### Response:\n")
    # The instruction is never cut: a prompt whose instruction cannot fit comes back long.
    instruction = "Rename every variable. " * 60
    long = encode_prompt(tokenizer, instruction, HUNK, 50)
    assert len(long) > 50 and instruction in _decode(tokenizer, long)


def test_a_response_too_long_for_the_budget_is_cut_and_says_so(tokenizer):
    record = _record(input=HUNK, output=LONG_HUNK)
    example = encode_record(record, tokenizer, max_length=128)
    assert example.response_cut and len(example) <= 128
    kept = [label for label in example.labels if label != IGNORE_INDEX]
    assert tokenizer.eos_token_id not in kept
    assert LONG_HUNK.startswith(_decode(tokenizer, kept))


def test_encode_records_drops_examples_whose_instruction_does_not_fit(tokenizer):
    records = [
        _record(),
        _record(input=LONG_HUNK),
        Record(task=RCG, instruction="Review carefully. " * 80, input=HUNK, output="ok"),
    ]
    examples, stats = encode_records(records, tokenizer, max_length=128)
    assert len(examples) == 2 and stats.too_long == 1 and stats.input_cut == 1
    assert stats.records == 3 and stats.examples == 2
    assert stats.tokens == sum(len(example) for example in examples)


def test_padding_collator(tokenizer):
    features = [encode_record(_record(output=o), tokenizer, 512).features() for o in ("a", "b c d")]
    batch = PaddingCollator(pad_token_id=tokenizer.pad_token_id)(features)
    lengths = [len(feature["input_ids"]) for feature in features]
    assert batch["input_ids"].shape == (2, max(lengths))
    short = lengths.index(min(lengths))
    assert batch["attention_mask"][short].sum().item() == min(lengths)
    assert (batch["labels"][short, min(lengths) :] == IGNORE_INDEX).all()
    assert (batch["input_ids"][short, min(lengths) :] == tokenizer.pad_token_id).all()


def test_packing_keeps_examples_apart(tokenizer):
    torch.manual_seed(0)
    model = build_tiny_model(
        tokenizer, hidden_size=32, intermediate_size=64, num_hidden_layers=2
    ).eval()
    examples = [
        encode_record(_record(output=output), tokenizer, 512)
        for output in ("Use a clearer name.", "no", "Split this function into two.")
    ]
    packed = PackingCollator()([example.features() for example in examples])
    assert packed["input_ids"].shape[0] == 1
    assert "attention_mask" not in packed
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts == [0, len(examples[0]), len(examples[0]) + len(examples[1])]
    with torch.no_grad():
        # As in training: no KV cache, so the model reads the packing from the position ids.
        packed_logits = model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).logits[0]
        separate = torch.cat(
            [
                model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
                for e in examples
            ]
        )
    assert torch.allclose(packed_logits, separate, atol=1e-4)


def test_read_instruct_data_json_jsonl_and_directory(tmp_path):
    rows = [
        {"instruction": "Add one.", "input": "x = 1", "output": "x = 2"},
        {"instruction": "Say hi.", "input": "", "output": "hi"},
        {"instruction": "", "output": "dropped: no instruction"},
    ]
    as_json = tmp_path / "code_alpaca.json"
    as_json.write_text(json.dumps(rows))
    as_jsonl = tmp_path / "code_alpaca.jsonl"
    as_jsonl.write_text("\n".join(json.dumps(row) for row in rows) + "\nnot json\n")
    for path in (as_json, as_jsonl):
        records = read_instruct_data(path)
        assert [r.output for r in records] == ["x = 2", "hi"]
        assert all(r.task == INSTRUCT and r.meta.source == "alpaca" for r in records)
    directory = tmp_path / "imported"
    (directory / INSTRUCT).mkdir(parents=True)
    (directory / INSTRUCT / "train.jsonl").write_text(
        "\n".join(record.to_json() for record in read_instruct_data(as_json)) + "\n"
    )
    assert len(read_instruct_data(directory)) == 2


def test_read_instruct_data_errors(tmp_path):
    with pytest.raises(HunkwiseError, match="does not exist"):
        read_instruct_data(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"text": "no instruction here"}')
    with pytest.raises(HunkwiseError, match="Alpaca-style"):
        read_instruct_data(bad)
