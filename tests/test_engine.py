"""The engine on a real (tiny, untrained) bundle: RNP scores from one batched forward pass
equal unbatched ones, batched generation equals one-at-a-time, adapters really switch."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch

from tests.untrained_bundle import HUNKS, build_stand_in_bundle
from training.bundle import BundleError
from training.data import encode_prompt
from training.engine import Engine, GenerationRequest
from training.errors import GenerationStopped, HunkwiseError
from training.hunks import Hunk
from training.rnp import label_token_ids
from training.tasks import ADAPTER_TASKS, DEFAULT_INSTRUCTIONS, LABEL_WORDS, RNP, TEMPLATE_NAME


@pytest.fixture(scope="module")
def engine(stand_in_bundle: Path) -> Engine:
    return Engine.load(stand_in_bundle, device="cpu", max_new_tokens=6, batch_size=4)


def _last_logits(engine: Engine, adapter: str, ids: list[int]) -> torch.Tensor:
    """The next-token logits for one unpadded prompt with ``adapter`` active."""
    with engine.lock, torch.inference_mode():
        engine.model.set_adapter(adapter, inference_mode=True)
        return engine.model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def _manual_score(engine: Engine, hunk: Hunk) -> float:
    ids = encode_prompt(
        engine.tokenizer, DEFAULT_INSTRUCTIONS[RNP], hunk.text, engine.max_prompt_tokens
    )
    logits = _last_logits(engine, RNP, ids)
    yes, no = engine.label_token_ids
    return torch.softmax(logits[[yes, no]], dim=-1)[0].item()


def test_info_lists_the_bundle(engine: Engine, stand_in_bundle: Path) -> None:
    info = engine.info
    assert info.adapters == ADAPTER_TASKS
    assert info.base_model == "bundle:base"
    assert info.template == TEMPLATE_NAME
    assert info.stage1 is True
    assert info.device == "cpu"
    assert info.bundle == stand_in_bundle
    assert engine.model.training is False


def test_label_tokens_are_the_first_tokens_of_the_label_words(engine: Engine) -> None:
    tokenizer = engine.tokenizer
    yes = tokenizer(LABEL_WORDS["yes"], add_special_tokens=False)["input_ids"][0]
    no = tokenizer(LABEL_WORDS["no"], add_special_tokens=False)["input_ids"][0]
    assert engine.label_token_ids == (yes, no)
    assert yes != no
    with pytest.raises(HunkwiseError, match="same token"):
        label_token_ids(tokenizer, {"yes": "yes", "no": "yes"})


def test_score_equals_unbatched_forward_passes(engine: Engine) -> None:
    scores = engine.score(HUNKS)
    assert len(scores) == len(HUNKS)
    for hunk, score in zip(HUNKS, scores, strict=True):
        assert 0.0 < score < 1.0
        assert score == pytest.approx(_manual_score(engine, hunk), abs=1e-5)
    # Strings are hunk texts; the order of the answers follows the order of the questions.
    assert engine.score([h.text for h in reversed(HUNKS)]) == pytest.approx(
        list(reversed(scores)), abs=1e-5
    )


def test_score_is_the_yes_no_softmax_not_the_full_vocabulary(engine: Engine) -> None:
    hunk = HUNKS[0]
    ids = encode_prompt(
        engine.tokenizer, DEFAULT_INSTRUCTIONS[RNP], hunk.text, engine.max_prompt_tokens
    )
    logits = _last_logits(engine, RNP, ids)
    yes, no = engine.label_token_ids
    expected = torch.sigmoid(logits[yes] - logits[no]).item()
    assert engine.score([hunk])[0] == pytest.approx(expected, abs=1e-5)


def test_adapters_really_switch(engine: Engine) -> None:
    ids = encode_prompt(engine.tokenizer, "Say something.", HUNKS[0].text, 512)
    logits = {task: _last_logits(engine, task, ids) for task in ADAPTER_TASKS}
    for first in ADAPTER_TASKS:
        for second in ADAPTER_TASKS:
            if first < second:
                assert not torch.allclose(logits[first], logits[second], atol=1e-4)
    # And the engine's score uses the rnp adapter whatever was active before.
    with engine.lock:
        engine.model.set_adapter("edit", inference_mode=True)
    assert engine.score([HUNKS[0]])[0] == pytest.approx(_manual_score(engine, HUNKS[0]), abs=1e-5)


def test_stage1_is_merged_into_the_base(engine: Engine, tmp_path: Path) -> None:
    without = Engine.load(build_stand_in_bundle(tmp_path, stage1=False), device="cpu")
    assert without.info.stage1 is False
    assert without.score(HUNKS[:2]) != pytest.approx(engine.score(HUNKS[:2]), abs=1e-4)


def test_generation_batched_equals_one_at_a_time(engine: Engine) -> None:
    batched = engine.comment(HUNKS)
    engine.batch_size = 1
    try:
        alone = [engine.comment([hunk])[0] for hunk in HUNKS]
    finally:
        engine.batch_size = 4
    assert batched == alone
    assert any(batched)


def test_generation_stops_between_tokens_when_asked(engine: Engine) -> None:
    """``should_stop`` is asked before every decoder layer and after every token: a
    generation stops at the first check that says true, even inside the prompt's prefill
    (GenerationStopped, no partial text); one that never says true changes nothing."""
    plain = engine.comment(HUNKS[:2])
    asked: list[int] = []

    def never() -> bool:
        asked.append(1)
        return False

    assert engine.comment(HUNKS[:2], should_stop=never) == plain
    assert len(asked) > 3  # once per token (and per batch), not once per call
    calls = 0

    def third_call() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    with pytest.raises(GenerationStopped):
        engine.comment(HUNKS[:2], should_stop=third_call)
    assert calls == 3  # it stopped at once: inside the first forward pass
    with pytest.raises(GenerationStopped):
        engine.edit(["x = 1"], ["Add a docstring."], should_stop=lambda: True)
    # The engine is still usable afterwards.
    assert engine.comment(HUNKS[:2]) == plain


def test_mixed_adapter_batches_equal_single_task_ones(engine: Engine) -> None:
    code = "def f(x):\n    return x+1"
    requests = [
        GenerationRequest("rcg", DEFAULT_INSTRUCTIONS["rcg"], HUNKS[1].text),
        GenerationRequest("edit", "Add a docstring.", code),
        GenerationRequest("cr", DEFAULT_INSTRUCTIONS["cr"], f"Comment: Use a name.\nCode:\n{code}"),
        GenerationRequest("rcg", DEFAULT_INSTRUCTIONS["rcg"], HUNKS[3].text),
    ]
    mixed = engine.generate(requests)
    assert mixed == [engine.generate([request])[0] for request in requests]
    assert engine.refine([code], ["Use a name."]) == [mixed[2]]
    assert engine.edit([code], ["Add a docstring."]) == [mixed[1]]
    # Each row went through its own adapter: the same prompt differs by task.
    same = [GenerationRequest(task, "Do it.", code) for task in ("rcg", "cr", "edit")]
    assert len(set(engine.generate(same))) > 1


def test_generation_stops_at_the_token_limit_and_decodes_only_new_tokens(
    engine: Engine,
) -> None:
    out = engine.edit(["x = 1"], ["Rename x."])[0]
    assert "### Response" not in out
    assert len(engine.tokenizer(out, add_special_tokens=False)["input_ids"]) <= 6 + 2


def test_threads_share_one_engine(engine: Engine) -> None:
    expected = engine.score(HUNKS)
    results: list[list[float]] = []

    def work() -> None:
        results.append(engine.score(HUNKS))
        engine.comment(HUNKS[:1])

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == pytest.approx(expected, abs=1e-6) for result in results)


def test_empty_input_and_mismatched_lengths(engine: Engine) -> None:
    assert engine.score([]) == []
    assert engine.comment([]) == []
    with pytest.raises(ValueError, match="2 codes but 1 comments"):
        engine.refine(["a", "b"], ["c"])


def test_a_task_missing_from_the_bundle_is_a_clear_error(
    stand_in_bundle: Path, tmp_path: Path
) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("base", "stage1", "rnp"):
        (partial / name).symlink_to(stand_in_bundle / name)
    manifest = json.loads((stand_in_bundle / "manifest.json").read_text())
    manifest["tasks"] = {"rnp": "rnp"}
    (partial / "manifest.json").write_text(json.dumps(manifest))
    only_rnp = Engine.load(partial, device="cpu")
    assert only_rnp.info.adapters == ("rnp",)
    assert len(only_rnp.score(HUNKS[:1])) == 1
    with pytest.raises(HunkwiseError, match=r"no 'rcg' adapter \(it has: rnp\).*hunkwise train"):
        only_rnp.comment(HUNKS[:1])


def test_an_adapter_without_safetensors_is_refused(stand_in_bundle: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("base", "stage1", "rnp"):
        (broken / name).symlink_to(stand_in_bundle / name)
    (broken / "rcg").mkdir()
    (broken / "rcg" / "adapter_config.json").write_text("{}")
    manifest = json.loads((stand_in_bundle / "manifest.json").read_text())
    manifest["tasks"] = {"rnp": "rnp", "rcg": "rcg"}
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"adapter_model\.safetensors"):
        Engine.load(broken, device="cpu")


def test_generated_text_loses_control_characters_editors_reject():
    from training.engine import _CONTROL

    assert _CONTROL.sub("", "a\x00b\x06c\bd\r\ne\rf\tg\nh\x7f") == "abcd\r\nef\tg\nh"
