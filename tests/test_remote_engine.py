"""The remote engine backend against a real OpenAI-compatible engine: llama-cpp-python's
server (llama.cpp) on the CPU, serving the session's tiny bundle from the GGUF files
``hunkwise serve-command --engine llama-cpp`` writes (bench/engine_server.py). The local
engine is the reference: the same prompts byte for byte, P(yes) within 0.02, the same
greedy comments; and what a user meets when the engine is down, refuses the key, or
serves another bundle. A missing engine skips these tests on a developer's machine and
fails them where it is required (``.ci/run`` exports ``HUNKWISE_REQUIRE_ENGINE=1``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from bench.engine_server import free_port, llama_cpp_available, llama_cpp_server
from bench.lsp_harness.documents import open_document
from tests.gitrepo import GitRepo
from tests.hunkwise_command import hunkwise
from tests.lsp_session import published, session, status, wait_until
from training.data import CUT_MARKER, encode_prompt
from training.remote import API_KEY_ENV, EngineUnavailable, RemoteEngine, check_url
from training.tasks import ADAPTER_TASKS as ADAPTERS
from training.tasks import DEFAULT_INSTRUCTIONS, RCG, RNP, render_prompt

KEY = "test-key-1234"
#: P(yes) through the engine and through the local engine agree this closely.
TOLERANCE = 0.02
REQUIRE_VARIABLE = "HUNKWISE_REQUIRE_ENGINE"


def _hunks(count: int) -> list[str]:
    """Hunks of the learnable repository's shape: functions added, some with a debug print."""
    hunks = []
    for n in range(count):
        body = [f"+def step_{n}(value):", f"+    total = value * {n % 7 + 1}"]
        if n % 3 == 0:
            body.append(f"+    print('debug', total)  # {n}")
        body.append("+    return total")
        hunks.append(f"@@ -{n + 1},0 +{n + 1},{len(body)} @@\n" + "\n".join(body))
    return hunks


@pytest.fixture(scope="module")
def engine_url(tiny_bundle: Path, tmp_path_factory) -> str:
    if not llama_cpp_available():
        reason = "llama-cpp-python[server] is not installed (pip install -e '.[dev]')"
        if os.environ.get(REQUIRE_VARIABLE):
            pytest.fail(f"{reason}; {REQUIRE_VARIABLE} is set: the engine is required here")
        pytest.skip(reason)
    with llama_cpp_server(tiny_bundle, tmp_path_factory.mktemp("engine"), api_key=KEY) as url:
        yield url


@pytest.fixture(scope="module")
def local(tiny_bundle: Path):
    from training.engine import Engine

    return Engine.load(tiny_bundle, device="cpu", max_new_tokens=24)


@pytest.fixture(scope="module")
def sent() -> list[dict]:
    return []


@pytest.fixture(scope="module")
def remote(tiny_bundle: Path, engine_url: str, sent: list[dict]):
    def record(request: httpx.Request) -> None:
        if request.method == "POST":
            sent.append(json.loads(request.content))

    engine = RemoteEngine.load(
        tiny_bundle,
        engine_url,
        api_key=KEY,
        max_new_tokens=24,
        event_hooks={"request": [record]},
    )
    yield engine
    engine.close()


def test_scores_agree_with_the_local_engine(local, remote) -> None:
    hunks = _hunks(40)
    here, there = local.score(hunks), remote.score(hunks)
    assert not remote.unscored
    worst = max(abs(a - b) for a, b in zip(here, there, strict=True))
    assert worst <= TOLERANCE, f"P(yes) differs by up to {worst:.4f}"
    # The raw adapter logits agree too (calibration is the same code on both sides).
    logits = zip(local.logits(hunks), remote.logits(hunks), strict=True)
    assert max(abs(a - b) for a, b in logits) < 0.01


def test_prompts_are_the_local_engine_prompts_byte_for_byte(local, remote, sent) -> None:
    hunks = _hunks(3)
    del sent[:]
    remote.score(hunks)
    remote.comment(hunks[:1])
    # (An echo request, for a label token beyond the top logprobs, adds the label.)
    prompts = [body["prompt"] for body in sent if not body.get("echo")]
    flat = [p for prompt in prompts for p in (prompt if isinstance(prompt, list) else [prompt])]
    expected = [render_prompt(DEFAULT_INSTRUCTIONS[RNP], hunk) for hunk in hunks]
    expected.append(render_prompt(DEFAULT_INSTRUCTIONS[RCG], hunks[0]))
    assert flat == expected
    rnp_request = next(body for body in sent if body["model"] == RNP)
    assert rnp_request["max_tokens"] == 1 and rnp_request["logprobs"] >= 2
    comment_request = next(body for body in sent if body["model"] == RCG)
    assert comment_request["temperature"] == 0 and comment_request["stop"] == ["</s>"]


def test_cut_prompts_tokenise_to_the_local_engine_ids(local, remote) -> None:
    # A hunk far over the rnp prompt budget is cut in the middle; the text sent is the
    # one the local engine tokenises whole, so both run the same ids, joins included.
    long = "@@ -1,0 +1,200 @@\n" + "\n".join(
        f"+    value_{n} = compute(value_{n - 1}, {n})  # é" for n in range(1, 200)
    )
    instruction = DEFAULT_INSTRUCTIONS[RNP]
    for hunk in [long, long + "\n", *_hunks(2)]:
        text = remote.prompt(RNP, instruction, hunk)
        ids = local.tokenizer(text)["input_ids"]
        assert ids == encode_prompt(local.tokenizer, instruction, hunk, local.rnp_prompt_tokens)
    assert len(ids) <= local.rnp_prompt_tokens or hunk != long
    cut = remote.prompt(RNP, instruction, long)
    assert CUT_MARKER in cut and len(local.tokenizer(cut)["input_ids"]) <= local.rnp_prompt_tokens
    here, there = local.score([long]), remote.score([long])
    assert abs(here[0] - there[0]) <= TOLERANCE


def test_generations_are_the_local_greedy_ones(local, remote) -> None:
    hunks = _hunks(4)
    assert remote.comment(hunks) == local.comment(hunks)
    codes = ["def f(x):\n    return x\n"]
    assert remote.refine(codes, ["Rename x"]) == local.refine(codes, ["Rename x"])
    assert remote.edit(codes, ["Add a docstring"]) == local.edit(codes, ["Add a docstring"])


def test_label_tokens_beyond_the_top_logprobs_are_read_from_the_echo(
    local, tiny_bundle: Path, engine_url: str
) -> None:
    # With only the top logprob returned, at most one label token is among it: the other's
    # logprob comes from the engine's echo of prompt + label, and the logit is still exact.
    sent: list[dict] = []
    engine = RemoteEngine.load(
        tiny_bundle,
        engine_url,
        api_key=KEY,
        event_hooks={"request": [lambda r: sent.append(json.loads(r.content or b"{}"))]},
    )
    try:
        engine._top_logprobs = 1
        hunks = _hunks(6)
        logits = engine.logits(hunks)
    finally:
        engine.close()
    assert not engine.unscored
    assert any(body.get("echo") for body in sent)
    reference = local.logits(hunks)
    assert max(abs(a - b) for a, b in zip(reference, logits, strict=True)) < 0.05


def test_an_answer_without_logprobs_leaves_the_hunk_unscored(remote) -> None:
    assert "no logprobs" in remote._label_logprobs({"text": "yes", "logprobs": None})
    # An echo that does not end in the label token as one token tells nothing.
    echo = {"logprobs": {"tokens": ["ye", "s"], "token_logprobs": [-1.0, -2.0],
                         "text_offset": [10, 12]}}  # fmt: skip
    assert remote._echoed_logprob(echo, "x" * 10 + "yes", "yes") is None
    whole = {"logprobs": {"tokens": ["yes"], "token_logprobs": [-1.5], "text_offset": [10]}}
    assert remote._echoed_logprob(whole, "x" * 10 + "yes", "yes") == -1.5


def test_an_unreachable_engine_is_one_clear_error(tiny_bundle: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EngineUnavailable, match="cannot reach the inference engine"):
        RemoteEngine.load(tiny_bundle, url, retries=1, backoff=0.01)


def test_a_wrong_key_says_which_variable_to_set(tiny_bundle: Path, engine_url: str) -> None:
    with pytest.raises(EngineUnavailable, match=API_KEY_ENV):
        RemoteEngine.load(tiny_bundle, engine_url, api_key="wrong")


def test_an_engine_serving_other_models_is_refused(tiny_bundle: Path, engine_url: str) -> None:
    with pytest.raises(EngineUnavailable, match="serves none of this bundle's adapters"):
        RemoteEngine.load(tiny_bundle, engine_url, api_key=KEY, model_name="other-{task}")


def test_engine_urls_are_checked() -> None:
    assert check_url("http://gpu:8000/v1/") == "http://gpu:8000"
    for bad in ("gpu:8000", "ftp://gpu", ""):
        with pytest.raises(ValueError):
            check_url(bad)


@pytest.fixture(scope="module")
def reviewed_repo(tmp_path_factory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("remote-review") / "repo")
    repo.commit("Add the app", app_dot_py="def start(value):\n    return value\n")
    repo.commit(
        "Add steps",
        app_dot_py="def start(value):\n    return value\n\n\n"
        "def step(value):\n    print('debug', value)\n    return value * 2\n",
    )
    return repo


def test_cli_review_through_the_engine_matches_the_local_review(
    tiny_bundle: Path, engine_url: str, reviewed_repo: GitRepo
) -> None:
    common = ("review", "HEAD", "--bundle", str(tiny_bundle), "--threshold", "0", "--json")
    env = {**os.environ, API_KEY_ENV: KEY}
    here = hunkwise(*common, "--device", "cpu", cwd=reviewed_repo.path, env=env)
    there = hunkwise(*common, "--engine", engine_url, cwd=reviewed_repo.path, env=env)
    assert here.returncode == there.returncode == 1, there.stderr
    mine, theirs = json.loads(here.stdout)["findings"], json.loads(there.stdout)["findings"]
    assert [f["hunk_id"] for f in mine] == [f["hunk_id"] for f in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert abs(a["probability"] - b["probability"]) <= TOLERANCE
        assert a["comment"] == b["comment"]


def test_cli_review_with_the_engine_down_exits_3_in_one_line(
    tiny_bundle: Path, reviewed_repo: GitRepo
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = hunkwise(
        "review", "HEAD", "--bundle", str(tiny_bundle), "--threshold", "0", "--engine", url,
        cwd=reviewed_repo.path,
    )  # fmt: skip
    assert result.returncode == 3
    assert "cannot reach the inference engine" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_serve_command_prints_the_vllm_launch_and_refuses_dora(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    result = hunkwise("serve-command", str(tiny_bundle), "--json")
    assert result.returncode == 0, result.stderr
    command = json.loads(result.stdout)
    argv = command["argv"]
    assert argv[:3] == ["vllm", "serve", str((tiny_bundle / "base").resolve())]
    assert argv[argv.index("--max-lora-rank") + 1] == "16"
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    lora = argv.index("--lora-modules")
    assert argv[lora + 1 : lora + 1 + len(manifest["tasks"])] == [
        f"{task}={(tiny_bundle / subdir).resolve()}" for task, subdir in manifest["tasks"].items()
    ]
    assert command["settings"] == {"hunkwise.engine": "http://localhost:8000"}

    bundle = tmp_path / "dora"
    shutil.copytree(tiny_bundle, bundle)
    config_path = bundle / "rcg" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(use_dora=True, r=12, modules_to_save=["lm_head"])
    config_path.write_text(json.dumps(config))
    refused = hunkwise("serve-command", str(bundle), "--engine", "sglang")
    assert refused.returncode == 2
    assert refused.stdout == ""
    for reason in ("DoRA", "rank 12", "modules_to_save"):
        assert reason in refused.stderr


# -- the language server with `hunkwise.engine` ------------------------------------------

APP = "".join(f"def step_{n}(value):\n    return value + {n}\n\n" for n in range(1, 6))


def _server_options(bundle: Path, engine: str) -> dict:
    return {
        "bundle": str(bundle),
        "engine": engine,
        "threshold": 0.0,
        "maxNewTokens": 6,
        "debounceMs": 30,
    }


async def _loaded(client) -> dict:
    for _ in range(600):
        state = await status(client)
        if state["state"] != "loading":
            return state
        await asyncio.sleep(0.05)
    raise AssertionError("the bundle did not load")


@pytest.mark.asyncio
async def test_the_server_reviews_through_the_engine(
    tiny_bundle: Path, engine_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, API_KEY_ENV: KEY}
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add the steps", steps_dot_py=APP)
    async with session(repo.path, _server_options(tiny_bundle, engine_url), env=env) as c:
        state = await _loaded(c)
        assert state["state"] == "ready", state
        assert state["device"] == f"remote {engine_url}"
        uri = (repo.path / "steps.py").as_uri()
        text = APP.replace("    return value + 2\n", "    print('debug', value)\n    return 2\n")
        open_document(c, uri, text)
        result = await published(c, uri, 1, check=lambda p: bool(p.diagnostics))
        [diagnostic] = result.diagnostics
        assert diagnostic.source == "hunkwise" and diagnostic.range.start.line == 4


@pytest.mark.asyncio
async def test_the_server_survives_an_unreachable_engine(
    tiny_bundle: Path, reviewed_repo: GitRepo
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with session(reviewed_repo.path, _server_options(tiny_bundle, url)) as client:
        state = await _loaded(client)
        assert state["state"] == "error"
        await wait_until(
            lambda: [
                m for m in client.messages if "cannot reach the inference engine" in m.message
            ],
            "the engine's error message",
        )
        shown = [m.message for m in client.messages if url in m.message]
        assert len(shown) == 1, shown
        # The server keeps answering.
        assert (await status(client))["state"] == "error"


def test_an_engine_allowing_fewer_logprobs_is_asked_for_fewer(tiny_bundle: Path) -> None:
    # STAND-IN: an httpx transport answering as vLLM does when started without
    # --max-logprobs (llama-cpp-python, the real engine above, takes any number). It
    # refuses more than 20 logprobs with vLLM's message and takes batches of prompts.
    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": task} for task in ADAPTERS]})
        body = json.loads(request.content)
        asked.append(body["logprobs"])
        if body["logprobs"] > 20:
            message = f"Requested sample logprobs of {body['logprobs']}, which is greater "
            return httpx.Response(400, json={"error": {"message": message + "than max 20"}})
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        top = {"yes": -0.5, "no": -1.5}
        choices = [
            {"index": i, "text": "yes", "logprobs": {"top_logprobs": [top]}}
            for i in range(len(prompts))
        ]
        return httpx.Response(200, json={"choices": choices})

    engine = RemoteEngine.load(
        tiny_bundle, "http://vllm:8000", transport=httpx.MockTransport(answer)
    )
    try:
        assert engine.logits(_hunks(3)) == pytest.approx([1.0, 1.0, 1.0])
        assert engine.logits(_hunks(2)) == pytest.approx([1.0, 1.0])
    finally:
        engine.close()
    assert asked == [400, 20, 20]  # refused once, then 20 for every batch
    assert engine._takes_batches is True


def test_cli_review_refuses_an_engine_that_is_not_a_url(
    tiny_bundle: Path, reviewed_repo: GitRepo
) -> None:
    result = hunkwise(
        "review", "HEAD", "--bundle", str(tiny_bundle), "--engine", "gpu-box:8000",
        cwd=reviewed_repo.path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "http(s) URL" in result.stderr and "Traceback" not in result.stderr
