"""A bundle served by a remote inference engine with an OpenAI-compatible completions API
(vLLM, SGLang, llama.cpp's server): the same interface as :class:`training.engine.Engine`
(``score``, ``comment``, ``refine``, ``edit``), with the base and the adapters on the
engine and only the bundle's manifest, tokenizer and calibration read here.

- Each task adapter is a model the engine serves, named by ``model_name`` (``{task}`` by
  default: vLLM's ``--lora-modules rnp=DIR``; SGLang names them ``{base}:{task}``).
- Prompts are the contract's template rendered as text, exactly as the local engine
  renders them before tokenising (a prompt over the budget is cut in the middle the same
  way, its head and tail decoded back to text); the engine's tokenizer adds BOS.
- Review necessity is one request per batch of hunks with ``max_tokens=1`` and the top
  logprobs of the first response token: the adapter's logit is log P(yes) - log P(no) of
  the label words' first tokens (the local engine's logit exactly: the normaliser cancels),
  then the bundle's calibration. A label token not among the top logprobs is read from
  the engine's echo of the prompt followed by that label (one more request per missing
  label); a hunk whose label logprobs the engine tells neither way gets no score (NaN,
  never flagged) and :attr:`RemoteEngine.unscored` says why.
- Comments, refinements and edits are greedy completions with the task's adapter as
  ``model``, ``max_tokens`` from the settings, stopping at EOS.
- Requests run concurrently, time out, and are retried with exponential backoff when the
  engine is unreachable or overloaded (connection errors, 408, 429, 502-504); any other
  failure is one :class:`EngineUnavailable` with the engine's own message.

An engine that takes one prompt per request (llama.cpp's server) is detected on the first
batch and sent one prompt per request from then on.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.bundle import BundleError, check_compatible, read_manifest
from training.engine import (
    BundleParts,
    GenerationRequest,
    clean_generated,
    hunk_text,
    max_prompt_tokens,
)
from training.errors import GenerationStopped, RuntimeFailure, first_line
from training.hunks import Hunk
from training.models import load_tokenizer
from training.rnp import label_token_ids
from training.tasks import DEFAULT_INSTRUCTIONS, RNP, TEMPLATE_NAME

if TYPE_CHECKING:
    import httpx

    from training.bundle import Manifest

log = logging.getLogger(__name__)

#: Where the engine's API key is read from (sent as ``Authorization: Bearer KEY``).
API_KEY_ENV = "HUNKWISE_ENGINE_API_KEY"
#: The adapters' model names on the engine; ``{task}`` and ``{base}`` are filled in.
DEFAULT_MODEL_NAME = "{task}"
#: Top logprobs asked for on the rnp token: enough that both label tokens are nearly always
#: among them (a label outside costs an echo request). ``serve-command`` starts vLLM with
#: ``--max-logprobs`` this high; an engine that refuses it gets
#: :data:`FALLBACK_TOP_LOGPROBS` (vLLM's default maximum) from then on.
DEFAULT_TOP_LOGPROBS = 400
FALLBACK_TOP_LOGPROBS = 20
_RETRY_STATUS = frozenset({408, 429, 502, 503, 504})


class EngineUnavailable(RuntimeFailure):
    """The remote engine could not be reached, or failed a request: one line saying which
    engine, what failed and what to do (``status``: the HTTP status of a refusal)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def refuses_logprobs(self) -> bool:
        """A refusal of the number of logprobs asked for (vLLM's ``--max-logprobs``)."""
        return self.status in (400, 422) and "logprob" in str(self).lower()


def is_local(engine: str | None) -> bool:
    """Whether an ``engine`` setting or option means the local engine (unset or "local")."""
    return not engine or engine.strip().lower() == "local"


def check_url(url: str) -> str:
    """An engine URL as taken: http(s)://host[:port][/prefix], without a trailing ``/v1``
    (added per request); a ValueError saying what is wrong otherwise."""
    from urllib.parse import urlsplit

    text = url.strip() if isinstance(url, str) else ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be 'local' or an http(s) URL such as http://gpu-box:8000")
    return text.rstrip("/").removesuffix("/v1")


def check_model_name(template: object) -> str:
    """A model-name template as taken: text with ``{task}`` (and optionally ``{base}``)."""
    if not isinstance(template, str) or "{task}" not in template:
        raise ValueError("must be a model name with {task} in it, such as '{task}'")
    try:
        template.format(task="rnp", base="base")
    except (KeyError, IndexError, ValueError):
        raise ValueError("may only use {task} and {base}") from None
    return template


class RemoteEngine(BundleParts):
    """A bundle whose adapters an OpenAI-compatible engine serves. Thread-safe; build one
    with :meth:`RemoteEngine.load`."""

    def __init__(
        self,
        url: str,
        tokenizer,
        manifest: Manifest,
        bundle: Path,
        *,
        client: httpx.Client,
        max_prompt_tokens: int,
        batch_size: int = 16,
        max_new_tokens: int = 128,
        concurrency: int = 4,
        retries: int = 3,
        backoff: float = 0.5,
        top_logprobs: int = DEFAULT_TOP_LOGPROBS,
        model_name: str = DEFAULT_MODEL_NAME,
    ) -> None:
        if batch_size < 1 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be at least 1")
        self.url = url
        self._model_name = model_name
        # Which adapters the engine serves: asked by :meth:`load`.
        self._init_bundle_parts(manifest, bundle, (), tokenizer, max_prompt_tokens)
        self._client = client
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._retries = retries
        self._backoff = backoff
        self._top_logprobs = top_logprobs
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="hunkwise-engine")
        yes, no = label_token_ids(tokenizer, manifest.label_words)
        #: The label tokens as the engine prints them in its logprobs.
        self._label_texts = (tokenizer.decode([yes]), tokenizer.decode([no]))
        #: None until the first batch of several prompts tells.
        self._takes_batches: bool | None = None
        #: Why the last :meth:`score` call left a hunk unscored, by its index.
        self.unscored: dict[int, str] = {}

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        bundle: Path,
        url: str,
        *,
        max_new_tokens: int = 128,
        batch_size: int = 16,
        api_key: str | None = None,
        timeout: float = 60.0,
        concurrency: int = 4,
        retries: int = 3,
        backoff: float = 0.5,
        model_name: str = DEFAULT_MODEL_NAME,
        transport: httpx.BaseTransport | None = None,
        event_hooks: dict | None = None,
    ) -> RemoteEngine:
        """Read ``bundle`` (manifest, tokenizer, calibration; no weights) and ask the engine
        at ``url`` which of its adapters it serves (``GET /v1/models``)."""
        import httpx

        bundle = Path(bundle)
        manifest = read_manifest(bundle)
        check_compatible(manifest, manifest.base_model, TEMPLATE_NAME, bundle=bundle)
        try:
            url = check_url(url)
        except ValueError as error:
            raise EngineUnavailable(f"engine {url!r}: {error}") from None
        tokenizer, context = load_tokenizer(manifest.base_model, bundle)
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            event_hooks=event_hooks or {},
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        engine = cls(
            url,
            tokenizer,
            manifest,
            bundle,
            client=client,
            max_prompt_tokens=max_prompt_tokens(manifest, context, max_new_tokens),
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            concurrency=concurrency,
            retries=retries,
            backoff=backoff,
            model_name=model_name,
        )
        served = engine.served_models()
        engine._adapters = tuple(task for task in manifest.tasks if engine.is_served(task, served))
        if not engine._adapters:
            wanted = ", ".join(engine.model_for(task) for task in manifest.tasks) or "none"
            engine.close()
            raise EngineUnavailable(
                f"the engine at {url} serves none of this bundle's adapters (wanted: {wanted}; "
                f"it serves: {', '.join(sorted(served)) or 'nothing'}); start it with the "
                f"command `hunkwise serve-command {bundle}` prints"
            )
        return engine

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def served_models(self) -> set[str]:
        """The model names the engine lists."""
        body = self._request("GET", "/v1/models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise EngineUnavailable(f"the engine at {self.url} answered /v1/models without a list")
        return {str(item.get("id")) for item in data if isinstance(item, dict)}

    def is_served(self, task: str, served: Sequence[str] | set[str]) -> bool:
        """Whether the engine lists ``task``'s model, or (SGLang's ``base:adapter`` names,
        which it may not list) the base before the colon."""
        name = self.model_for(task)
        return name in served or (":" in name and name.split(":", 1)[0] in served)

    def model_for(self, task: str) -> str:
        """The engine's model name for ``task``'s adapter."""
        return self._model_name.format(task=task, base=self._manifest.base_model)

    # -- what it runs ----------------------------------------------------------------------

    def _runs_on(self) -> tuple[str, str]:
        return f"remote {self.url}", "as served"

    def prompt(self, task: str, instruction: str, input: str) -> str:
        """The prompt text sent for one request: the template rendered as the local engine
        renders it (cut to the task's prompt budget)."""
        from training.data import prompt_text

        budget = self.rnp_prompt_tokens if task == RNP else self.max_prompt_tokens
        return prompt_text(self._tokenizer, instruction, input, budget)[0]

    # -- tasks -----------------------------------------------------------------------------

    def score(self, hunks: Sequence[Hunk | str]) -> list[float]:
        """P(review needed) for each hunk as served (NaN where the engine's logprobs held
        neither label token: see :attr:`unscored`)."""
        logits = self.logits(hunks)
        known = [i for i, value in enumerate(logits) if not math.isnan(value)]
        served = self.served([logits[i] for i in known], [hunks[i] for i in known])
        probabilities = [math.nan] * len(logits)
        for index, p in zip(known, served, strict=True):
            probabilities[index] = p
        return probabilities

    def logits(self, hunks: Sequence[Hunk | str]) -> list[float]:
        """The rnp adapter's logit log P(yes) - log P(no) for each hunk: from the top
        logprobs of the first response token, and for a label token not among them, from
        the engine's echo of the prompt followed by that label (NaN where neither tells:
        see :attr:`unscored`)."""
        self.unscored = {}
        if not hunks:
            return []
        self._require(RNP)
        instruction = DEFAULT_INSTRUCTIONS[RNP]
        prompts = [self.prompt(RNP, instruction, hunk_text(hunk)) for hunk in hunks]
        payload = {"max_tokens": 1, "temperature": 0, "logprobs": self._top_logprobs}
        try:
            choices = self._complete(RNP, prompts, payload)
        except EngineUnavailable as error:
            if not error.refuses_logprobs or self._top_logprobs <= FALLBACK_TOP_LOGPROBS:
                raise
            log.info(
                "the engine takes fewer logprobs (%s): asking for %d", error, FALLBACK_TOP_LOGPROBS
            )
            self._top_logprobs = FALLBACK_TOP_LOGPROBS
            payload = {**payload, "logprobs": FALLBACK_TOP_LOGPROBS}
            choices = self._complete(RNP, prompts, payload)
        pairs = [self._label_logprobs(choice) for choice in choices]
        missing = [
            (index, label)
            for index, pair in enumerate(pairs)
            if isinstance(pair, list)
            for label in (0, 1)
            if pair[label] is None
        ]
        if missing:
            texts = [prompts[i] + self._label_texts[label] for i, label in missing]
            echo = {"max_tokens": 1, "temperature": 0, "logprobs": 1, "echo": True}
            try:
                choices = self._complete(RNP, texts, echo)
            except EngineUnavailable as error:
                choices = [{"error": first_line(error)}] * len(missing)
            for (index, label), text, choice in zip(missing, texts, choices, strict=True):
                pair = pairs[index]
                if isinstance(pair, list):
                    pair[label] = self._echoed_logprob(choice, text, self._label_texts[label])
        logits = []
        for index, pair in enumerate(pairs):
            if isinstance(pair, str):
                self.unscored[index] = pair
                logits.append(math.nan)
            elif pair[0] is None or pair[1] is None:
                self.unscored[index] = (
                    f"the label tokens ({self._label_texts[0]!r}, {self._label_texts[1]!r}) "
                    f"were not all among the engine's top {self._top_logprobs} logprobs, "
                    "and it did not echo their logprobs"
                )
                logits.append(math.nan)
            else:
                logits.append(pair[0] - pair[1])
        return logits

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Greedy completions, each request through its task's adapter on the engine."""
        outputs = [""] * len(requests)
        for task in dict.fromkeys(request.task for request in requests):
            indices = [i for i, request in enumerate(requests) if request.task == task]
            pairs = [(requests[i].instruction, requests[i].input) for i in indices]
            for index, text in zip(indices, self._generate(task, pairs, should_stop), strict=True):
                outputs[index] = text
        return outputs

    # -- requests --------------------------------------------------------------------------

    def _generate(
        self,
        task: str,
        pairs: Sequence[tuple[str, str]],
        should_stop: Callable[[], bool] | None,
    ) -> list[str]:
        if not pairs:
            return []
        self._require(task)
        prompts = [self.prompt(task, instruction, input) for instruction, input in pairs]
        # Greedy, as the local engine decodes; llama.cpp's server penalises repeats unless
        # told not to (vLLM and SGLang ignore the field, their default is none).
        payload: dict[str, Any] = {
            "max_tokens": self.max_new_tokens,
            "temperature": 0,
            "repeat_penalty": 1.0,
        }
        eos = self._tokenizer.eos_token
        if eos:
            payload["stop"] = [eos]
        choices = self._complete(task, prompts, payload, should_stop)
        return [clean_generated(str(choice.get("text") or "")) for choice in choices]

    def _complete(
        self,
        task: str,
        prompts: list[str],
        payload: dict[str, Any],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[dict]:
        """One choice per prompt, in order: batches of ``batch_size`` prompts per request
        (one prompt per request for an engine that takes no batches), run concurrently."""
        model = self.model_for(task)
        results: list[dict | None] = [None] * len(prompts)

        def run(indices: list[int]) -> None:
            if should_stop is not None and should_stop():
                raise GenerationStopped()
            choices = self._choices(model, [prompts[i] for i in indices], payload)
            for index, choice in zip(indices, choices, strict=True):
                results[index] = choice

        size = 1 if self._takes_batches is False else self.batch_size
        batches = [
            list(range(i, min(i + size, len(prompts)))) for i in range(0, len(prompts), size)
        ]
        if self._takes_batches is None and batches and len(batches[0]) > 1:
            run(batches.pop(0))  # tells whether the engine takes batches
            if self._takes_batches is False:
                batches = [[i] for batch in batches for i in batch]
        for future in [self._pool.submit(run, batch) for batch in batches]:
            future.result()
        if should_stop is not None and should_stop():
            raise GenerationStopped()
        return [choice or {} for choice in results]

    def _choices(self, model: str, prompts: list[str], payload: dict[str, Any]) -> list[dict]:
        body = {"model": model, "prompt": prompts if len(prompts) > 1 else prompts[0], **payload}
        if len(prompts) > 1 and self._takes_batches is None:
            try:
                answer = self._request("POST", "/v1/completions", json=body, retry=False)
                choices = _ordered_choices(answer, len(prompts))
            except EngineUnavailable as error:
                if error.refuses_logprobs:
                    raise  # a refusal of the request, not of the batch
                choices = None
                log.info("the engine refused a batch of prompts (%s)", error)
            if choices is not None:
                self._takes_batches = True
                return choices
            self._takes_batches = False
            log.info("the engine at %s takes one prompt per request", self.url)
            return [c for prompt in prompts for c in self._choices(model, [prompt], payload)]
        answer = self._request("POST", "/v1/completions", json=body)
        choices = _ordered_choices(answer, len(prompts))
        if choices is None:
            raise EngineUnavailable(
                f"the engine at {self.url} answered {len(prompts)} prompts for {model!r} "
                "with a different number of completions"
            )
        return choices

    def _request(self, method: str, path: str, *, retry: bool = True, **kwargs) -> Any:
        import httpx

        attempts = 1 + (self._retries if retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as error:
                if last:
                    raise EngineUnavailable(
                        f"cannot reach the inference engine at {self.url} "
                        f"({first_line(error)}); is it running? (`hunkwise serve-command` "
                        "prints how to start one)"
                    ) from None
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise EngineUnavailable(
                            f"the engine at {self.url} answered {path} with something "
                            "that is not JSON"
                        ) from None
                if response.status_code not in _RETRY_STATUS or last:
                    raise EngineUnavailable(
                        f"the engine at {self.url} refused {method} {path} "
                        f"({response.status_code}: {_error_text(response)})"
                        + (_AUTH_HINT if response.status_code in (401, 403) else ""),
                        response.status_code,
                    )
            time.sleep(self._backoff * (2**attempt))
        raise AssertionError("unreachable")

    def _label_logprobs(self, choice: dict) -> list[float | None] | str:
        """[log P(yes), log P(no)] from the first response token's top logprobs (None for a
        label not among them), or why there are none."""
        logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
        tops = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
        top = tops[0] if isinstance(tops, list) and tops else None
        if not isinstance(top, dict) or not top:
            return "the engine returned no logprobs for the response token"
        return [_number(top.get(text)) for text in self._label_texts]

    def _echoed_logprob(self, choice: dict, text: str, label: str) -> float | None:
        """The logprob of ``label``'s token at the end of the echoed ``text`` (None when the
        engine did not echo it as one token there)."""
        logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
        if not isinstance(logprobs, dict):
            return None
        tokens = logprobs.get("tokens") or []
        values = logprobs.get("token_logprobs") or []
        offsets = logprobs.get("text_offset") or []
        start = len(text) - len(label)
        for token, value, offset in zip(tokens, values, offsets, strict=False):
            if offset == start and token == label:
                return _number(value)
        return None

    def _require(self, task: str) -> None:
        if task not in self._adapters:
            have = ", ".join(self._adapters) or "none"
            raise BundleError(
                f"the engine at {self.url} serves no {task!r} adapter of {self._bundle} "
                f"(it serves: {have}); start it with the command `hunkwise serve-command "
                f"{self._bundle}` prints"
            )


_AUTH_HINT = f"; set {API_KEY_ENV} to the engine's API key"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _ordered_choices(answer: Any, count: int) -> list[dict] | None:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or len(choices) != count:
        return None
    if all(isinstance(c, dict) and isinstance(c.get("index"), int) for c in choices):
        choices = sorted(choices, key=lambda c: c["index"])
    return choices


def _error_text(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return first_line(response.text or response.reason_phrase or "no message")[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    message = error or (body.get("detail") if isinstance(body, dict) else None) or body
    return first_line(str(message))[:200]


def open_engine(
    bundle: Path,
    engine: str | None = None,
    *,
    device: str = "auto",
    max_new_tokens: int = 128,
    batch_size: int | None = None,
    engine_model: str = DEFAULT_MODEL_NAME,
):
    """The bundle's engine: loaded here (``engine`` unset or "local"), or the remote one at
    the URL ``engine``. The one place the command line and the server choose."""
    if is_local(engine):
        from training.engine import Engine

        return Engine.load(
            bundle, device=device, max_new_tokens=max_new_tokens, batch_size=batch_size or 8
        )
    return RemoteEngine.load(
        bundle,
        str(engine),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size or 16,
        model_name=engine_model,
    )
