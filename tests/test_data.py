"""Records -> examples: golden checks of the loss mask, middle truncation of long inputs,
the cached Arrow encoding (the rows encode_record makes, read back from the cache, encoded
again when an input changes), the collators (packing keeps examples apart), and stage-1
data reading."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import pytest
import torch
from rich.console import Console

import training.data
from training.data import (
    CUT_MARKER,
    IGNORE_INDEX,
    TRAINER_COLUMNS,
    PackingCollator,
    PaddingCollator,
    encode_dataset,
    encode_prompt,
    encode_record,
    encode_records,
    read_instruct_data,
)
from training.errors import HunkwiseError
from training.mining.importers import import_file
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


def _mixed_records() -> list[Record]:
    """At 128 tokens: two that fit, one input cut, one response cut, one that cannot fit."""
    return [
        _record(),
        _record(RNP, output="yes"),
        _record(input=LONG_HUNK),
        _record(input=HUNK, output=LONG_HUNK),
        Record(task=RCG, instruction="Review carefully. " * 80, input=HUNK, output="ok"),
    ]


def _rows(dataset) -> list[dict]:
    return [dataset[index] for index in range(len(dataset))]


@pytest.fixture
def encode_calls(monkeypatch) -> list[str]:
    """The ids of the records :func:`encode_record` tokenises (the real function runs)."""
    calls: list[str] = []
    real = training.data.encode_record

    def counting(record, tokenizer, max_length):
        calls.append(record.id)
        return real(record, tokenizer, max_length)

    monkeypatch.setattr(training.data, "encode_record", counting)
    return calls


@pytest.mark.parametrize("cached", [True, False], ids=["cache-dir", "in-memory"])
def test_encode_dataset_holds_what_encode_record_makes(tokenizer, tmp_path, cached):
    records = _mixed_records()
    dataset, stats = encode_dataset(records, tokenizer, 128, tmp_path if cached else None)
    assert dataset.column_names == list(TRAINER_COLUMNS)
    expected = [encode_record(record, tokenizer, 128) for record in records[:4]]
    assert _rows(dataset) == [example.features() for example in expected]
    assert stats == encode_records(records, tokenizer, 128)[1]
    assert (stats.records, stats.examples, stats.too_long) == (5, 4, 1)
    # The response-cut one also has its input cut.
    assert stats.input_cut == 2 and stats.response_cut == 1
    assert stats.tokens == sum(len(example) for example in expected)
    # Memory-mapped from the cache dir, or held in memory and nothing written.
    files = [Path(file["filename"]).parent for file in dataset.cache_files]
    assert files == ([tmp_path] if cached else [])
    assert len(list(tmp_path.iterdir())) == (1 if cached else 0)


def test_the_collators_take_rows_of_the_encoded_set(tokenizer, tmp_path):
    records = _mixed_records()
    dataset, _ = encode_dataset(records, tokenizer, 128, tmp_path)
    # The Trainer's DataLoader fetches a batch of a datasets.Dataset with __getitems__.
    rows = dataset.__getitems__([0, 1, 2])
    features = [encode_record(record, tokenizer, 128).features() for record in records[:3]]
    for collator in (PaddingCollator(tokenizer), PackingCollator()):
        got, want = collator(rows), collator(features)
        assert got.keys() == want.keys()
        assert all(torch.equal(got[key], want[key]) for key in want)


def test_a_second_encode_reads_the_cache(tokenizer, tmp_path, encode_calls):
    records = _mixed_records()
    first, stats = encode_dataset(records, tokenizer, 128, tmp_path)
    assert len(encode_calls) == len(records)
    [cache_file] = tmp_path.iterdir()
    written = cache_file.stat().st_mtime_ns
    second, again = encode_dataset(records, tokenizer, 128, tmp_path)
    assert len(encode_calls) == len(records)
    assert list(tmp_path.iterdir()) == [cache_file]
    assert cache_file.stat().st_mtime_ns == written
    assert again == stats and _rows(second) == _rows(first)


def test_a_reloaded_tokenizer_reads_the_same_cache(tokenizer, tmp_path, encode_calls):
    # --resume loads the tokenizer from disk again: a new object, the same ids.
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path / "tokenizer")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    records = _mixed_records()
    encode_dataset(records, tokenizer, 128, tmp_path / "encoded")
    encode_dataset(records, reloaded, 128, tmp_path / "encoded")
    assert len(encode_calls) == len(records)
    assert len(list((tmp_path / "encoded").iterdir())) == 1


def test_another_max_length_tokenizer_or_output_encodes_again(tokenizer, tmp_path, encode_calls):
    records = _mixed_records()
    examples, expected = encode_records(records, tokenizer, 512)
    other = build_tiny_tokenizer(["def other(tokens):\n    return tokens\n"] * 5, vocab_size=400)
    first_of_other = encode_record(records[0], other, 128).features()
    # A record's id leaves its output out; the fingerprint does not.
    relabelled = [*records[:-1], Record(**{**records[-1].__dict__, "output": "changed"})]
    encode_calls.clear()

    encode_dataset(records, tokenizer, 128, tmp_path)
    longer, stats = encode_dataset(records, tokenizer, 512, tmp_path)
    assert len(encode_calls) == 2 * len(records)
    assert stats == expected and _rows(longer) == [example.features() for example in examples]
    retokenised, _ = encode_dataset(records, other, 128, tmp_path)
    assert len(encode_calls) == 3 * len(records)
    assert _rows(retokenised)[0] == first_of_other
    encode_dataset(relabelled, tokenizer, 128, tmp_path)
    assert len(encode_calls) == 4 * len(records)
    assert len(list(tmp_path.iterdir())) == 4


def test_encode_dataset_prints_nothing_and_writes_only_its_cache(tokenizer, tmp_path, capfd):
    hf_home = Path(datasets.config.HF_CACHE_HOME)

    def hf_files():
        return sorted(hf_home.rglob("*")) if hf_home.exists() else None

    before, bars_off = hf_files(), datasets.are_progress_bars_disabled()
    for _ in range(2):
        encode_dataset(_mixed_records(), tokenizer, 128, tmp_path / "encoded")
    # No "Map: 100%" bar, no log lines: hunkwise shows its own progress.
    assert capfd.readouterr() == ("", "")
    assert datasets.are_progress_bars_disabled() == bars_off
    assert hf_files() == before
    assert list(tmp_path.iterdir()) == [tmp_path / "encoded"]
    [cache_file] = (tmp_path / "encoded").iterdir()
    assert cache_file.name.startswith("encoded-") and cache_file.suffix == ".arrow"


def test_encode_dataset_of_no_records(tokenizer, tmp_path):
    dataset, stats = encode_dataset([], tokenizer, 128, tmp_path)
    assert len(dataset) == 0 and dataset.column_names == list(TRAINER_COLUMNS)
    assert stats.records == stats.examples == 0
    assert not list(tmp_path.iterdir())


def test_padding_collator(tokenizer):
    features = [encode_record(_record(output=o), tokenizer, 512).features() for o in ("a", "b c d")]
    batch = PaddingCollator(tokenizer)(features)
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


def test_read_instruct_data_reads_alpaca_as_the_importer_does(tmp_path):
    rows = [{"instruction": f"Task {i}.", "input": "", "output": f"y{i}"} for i in range(3)]
    data = tmp_path / "code_alpaca.jsonl"
    data.write_text(
        "\n".join([json.dumps(rows[0]), "not json", json.dumps({"instruction": "x"})])
        + "\n"
        + "\n".join(json.dumps(row) for row in rows[1:])
        + "\n"
    )
    log = io.StringIO()
    records = read_instruct_data(data, Console(file=log, width=200))
    assert [r.instruction for r in records] == ["Task 0.", "Task 1.", "Task 2."]
    # The same records as `hunkwise import alpaca`, its bad rows logged by line the same way.
    report, imported = import_file("alpaca", data)
    assert records == imported and report.malformed_lines == [2, 3]
    assert f"{data}:2: skipped, bad_json" in log.getvalue()
    assert f"{data}:3: skipped, missing_field: no 'output'" in log.getvalue()


def test_read_instruct_data_errors(tmp_path):
    with pytest.raises(HunkwiseError, match="does not exist"):
        read_instruct_data(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"text": "no instruction here"}')
    with pytest.raises(HunkwiseError, match="could be read as alpaca data"):
        read_instruct_data(bad)
