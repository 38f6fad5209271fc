"""Runs a trained bundle: one base model with every task adapter loaded on it, answering
review-necessity scores, review comments, refinements and edits in batches. Shared by the
``hunkwise review`` command and the language server (which calls it from a worker thread)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from training.bundle import BundleError, base_mismatch, check_compatible, read_manifest
from training.calibration import DEFAULT_THRESHOLD, Calibration, sigmoid
from training.data import encode_prompt, left_pad, real_positions
from training.errors import GenerationStopped, HunkwiseError, first_line
from training.evidence import Evidence, EvidenceIndex, load_evidence
from training.hunks import Hunk
from training.rnp import label_token_ids
from training.tasks import CR, DEFAULT_INSTRUCTIONS, EDIT, RCG, RNP, TEMPLATE_NAME, cr_input

if TYPE_CHECKING:
    import torch

    from training.bundle import Manifest

#: Prompt budget when the manifest does not say what training used.
_FALLBACK_MAX_PROMPT_TOKENS = 1024


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for a generating adapter: which task, and the prompt's two parts."""

    task: str
    instruction: str
    input: str


@dataclass(frozen=True)
class EngineInfo:
    """What an engine runs, for status displays."""

    bundle: Path
    base_model: str
    template: str
    stage1: bool
    adapters: tuple[str, ...]
    device: str
    dtype: str
    batch_size: int
    max_new_tokens: int
    max_prompt_tokens: int


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f]|\r(?!\n)")


class BundleParts:
    """What a bundle gives whichever engine runs its adapters (here or remote): which
    adapters there are, the served score's calibration and threshold, the evidence."""

    def _init_bundle_parts(
        self,
        manifest: Manifest,
        bundle: Path,
        adapters: tuple[str, ...],
        tokenizer,
        max_prompt_tokens: int,
    ) -> None:
        self._manifest = manifest
        self._bundle = bundle
        self._adapters = adapters
        self._tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens
        recorded = manifest.training.get("rnp_prompt_tokens") if manifest.training else None
        #: The prompt budget of rnp scoring: what the rnp adapter was trained on.
        self.rnp_prompt_tokens = (
            min(recorded, max_prompt_tokens)
            if isinstance(recorded, int) and recorded > 0
            else max_prompt_tokens
        )
        self._calibration = (
            Calibration.from_dict(manifest.calibration) if manifest.calibration else None
        )
        self._evidence_lock = threading.Lock()
        self._evidence: tuple[EvidenceIndex | None, str] | None = None

    def has_task(self, task: str) -> bool:
        return task in self._adapters

    @property
    def info(self) -> EngineInfo:
        """What the engine runs, for status displays."""
        device, dtype = self._runs_on()
        return EngineInfo(
            bundle=self._bundle,
            base_model=self._manifest.base_model,
            template=self._manifest.template,
            stage1=bool(self._manifest.stage1),
            adapters=self._adapters,
            device=device,
            dtype=dtype,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            max_prompt_tokens=self.max_prompt_tokens,
        )

    def _runs_on(self) -> tuple[str, str]:
        """The device and dtype the weights are on."""
        raise NotImplementedError

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def calibration(self) -> Calibration | None:
        """How served scores are computed from the adapter's (None: they are the same)."""
        return self._calibration

    @property
    def default_threshold(self) -> float:
        """The bundle's threshold on served scores (chosen on its valid split), else 0.5."""
        return self._calibration.threshold if self._calibration else DEFAULT_THRESHOLD

    def served(self, logits: Sequence[float], hunks: Sequence[Hunk | str]) -> list[float]:
        """P(yes) as served, from the adapter's logits of ``hunks``."""
        if not logits:
            return []
        if self._calibration is None:
            return [float(p) for p in sigmoid(logits)]
        return self._calibration.probabilities(logits, [hunk_text(h) for h in hunks])

    def evidence_index(self) -> tuple[EvidenceIndex | None, str]:
        """The bundle's evidence index, loaded on first use, or None and why not (no
        index, or one refused as damaged or from another bundle: reviews go on without)."""
        with self._evidence_lock:
            if self._evidence is None:
                self._evidence = load_evidence(self._bundle, self._manifest.evidence)
            return self._evidence

    def evidence(self, hunks: Sequence[Hunk]) -> list[list[Evidence]]:
        """The past fixed changes most like each hunk (empty lists without an index)."""
        index, _ = self.evidence_index()
        if index is None:
            return [[] for _ in hunks]
        return index.neighbours([(hunk.text, hunk.path) for hunk in hunks])

    # The generating tasks, through the engine's ``generate``.

    def comment(
        self, hunks: Sequence[Hunk | str], should_stop: Callable[[], bool] | None = None
    ) -> list[str]:
        """A review comment for each hunk (the rcg adapter)."""
        instruction = DEFAULT_INSTRUCTIONS[RCG]
        texts = self.generate(
            [GenerationRequest(RCG, instruction, hunk_text(hunk)) for hunk in hunks],
            should_stop,
        )
        return [text.strip() for text in texts]

    def refine(
        self,
        codes: Sequence[str],
        comments: Sequence[str],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Each code refined according to its review comment (the cr adapter)."""
        same_length(codes, comments, "codes", "comments")
        instruction = DEFAULT_INSTRUCTIONS[CR]
        return self.generate(
            [
                GenerationRequest(CR, instruction, cr_input(comment, code))
                for code, comment in zip(codes, comments, strict=True)
            ],
            should_stop,
        )

    def edit(
        self,
        codes: Sequence[str],
        instructions: Sequence[str],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Each code edited according to its instruction (the edit adapter)."""
        same_length(codes, instructions, "codes", "instructions")
        return self.generate(
            [
                GenerationRequest(EDIT, instruction, code)
                for code, instruction in zip(codes, instructions, strict=True)
            ],
            should_stop,
        )

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        raise NotImplementedError


class Engine(BundleParts):
    """A loaded bundle. Every public method is thread-safe and batched; build one with
    :meth:`Engine.load`."""

    def __init__(
        self,
        model,
        tokenizer,
        manifest: Manifest,
        bundle: Path,
        *,
        batch_size: int = 8,
        max_new_tokens: int = 128,
        max_prompt_tokens: int = _FALLBACK_MAX_PROMPT_TOKENS,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._model = model
        adapters = tuple(task for task in manifest.tasks if task in model.peft_config)
        self._init_bundle_parts(manifest, bundle, adapters, tokenizer, max_prompt_tokens)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._lock = threading.RLock()
        self._device = next(model.parameters()).device
        self._eos_id = tokenizer.eos_token_id
        pad = tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else self._eos_id
        if self._pad_id is None:
            raise BundleError(f"the tokenizer in {bundle} has neither a pad nor an EOS token")
        try:
            self._yes_id, self._no_id = label_token_ids(tokenizer, manifest.label_words)
        except HunkwiseError as error:
            raise BundleError(f"the bundle at {bundle}: {error}") from None

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        bundle: Path,
        device: str = "auto",
        max_new_tokens: int = 128,
        batch_size: int = 8,
    ) -> Engine:
        """Load ``bundle``: its base once (with the stage-1 adapter merged in when there is
        one), then every task adapter on that base, in eval mode."""
        import torch
        from peft import PeftModel
        from safetensors import SafetensorError

        from training.models import load_base, quiet_libraries

        bundle = Path(bundle)
        manifest = read_manifest(bundle)
        # The base about to be loaded against what each adapter says it was trained on.
        check_compatible(manifest, manifest.base_model, TEMPLATE_NAME, bundle=bundle)
        # read_manifest has checked every adapter directory (safetensors weights only).
        adapter_dirs = {task: bundle / subdir for task, subdir in manifest.tasks.items()}

        with quiet_libraries(), torch.no_grad():
            model, tokenizer = load_base(manifest.base_model, device=device, bundle=bundle)
            loading = manifest.stage1 or ""
            try:
                if manifest.stage1:
                    stage1 = PeftModel.from_pretrained(model, str(bundle / manifest.stage1))
                    model = stage1.merge_and_unload()
                tasks = list(adapter_dirs)
                # Adapters in the base's dtype (peft would keep them in float32 beside a
                # bf16 base): four adapters then cost a few percent of the base's memory.
                same_dtype = {"autocast_adapter_dtype": False, "is_trainable": False}
                loading = manifest.tasks[tasks[0]]
                model = PeftModel.from_pretrained(
                    model, str(adapter_dirs[tasks[0]]), adapter_name=tasks[0], **same_dtype
                )
                for task in tasks[1:]:
                    loading = manifest.tasks[task]
                    model.load_adapter(str(adapter_dirs[task]), adapter_name=task, **same_dtype)
            except SafetensorError as error:
                raise BundleError(
                    f"the bundle at {bundle}: the weights of {loading} are damaged "
                    f"({first_line(error)}); retrain it with `hunkwise train-from-repo`"
                ) from error
            except RuntimeError as error:
                # Weights that do not fit the base: trained on another one, whatever the
                # adapter's config says.
                mismatch = base_mismatch(bundle, manifest, loading, error)
                if mismatch is None:
                    raise
                raise mismatch from error
        model.eval()
        model.requires_grad_(False)
        return cls(
            model,
            tokenizer,
            manifest,
            bundle,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            max_prompt_tokens=max_prompt_tokens(
                manifest, getattr(model.config, "max_position_embeddings", None), max_new_tokens
            ),
        )

    # -- what it runs ----------------------------------------------------------------------

    def _runs_on(self) -> tuple[str, str]:
        return str(self._device), str(next(self._model.parameters()).dtype).removeprefix("torch.")

    @property
    def model(self):
        """The peft model (base plus named task adapters); hold :attr:`lock` to use it."""
        return self._model

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def label_token_ids(self) -> tuple[int, int]:
        """The ids of the first tokens of the "yes" and "no" label words."""
        return self._yes_id, self._no_id

    def encode(self, instruction: str, input: str) -> list[int]:
        """The prompt ids exactly as training built them (long inputs cut in the middle)."""
        return encode_prompt(self._tokenizer, instruction, input, self.max_prompt_tokens)

    # -- tasks -----------------------------------------------------------------------------

    def score(self, hunks: Sequence[Hunk | str]) -> list[float]:
        """P(review needed) for each hunk as served: the adapter's score through the
        bundle's calibration. One forward pass per batch, never generation."""
        return self.served(self.logits(hunks), hunks)

    def logits(self, hunks: Sequence[Hunk | str]) -> list[float]:
        """The rnp adapter's raw logit log P(yes) - log P(no) over the two label tokens
        (its P(yes) is the sigmoid of it)."""
        if not hunks:
            return []
        self._require(RNP)
        instruction = DEFAULT_INSTRUCTIONS[RNP]
        prompts = [
            encode_prompt(self._tokenizer, instruction, hunk_text(hunk), self.rnp_prompt_tokens)
            for hunk in hunks
        ]
        import torch

        logits: list[float] = [0.0] * len(prompts)
        with self._lock, torch.inference_mode():
            self._model.set_adapter(RNP, inference_mode=True)
            for batch in self._batches(prompts):
                input_ids, attention_mask = self._left_pad([prompts[i] for i in batch])
                last = self._model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=real_positions(attention_mask),
                    logits_to_keep=1,
                ).logits[:, -1, :]
                pair = last[:, [self._yes_id, self._no_id]].float()
                for index, value in zip(batch, (pair[:, 0] - pair[:, 1]).tolist(), strict=True):
                    logits[index] = value
        return logits

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Greedy completions for requests of any generating tasks, batched; a batch that
        mixes tasks runs each row through its own adapter in one pass.

        ``should_stop`` is asked before every decoder layer (so between tokens too) and when
        a batch ends: once it says true, generation stops and :class:`GenerationStopped` is
        raised (no partial texts are returned)."""
        if not requests:
            return []
        for task in dict.fromkeys(request.task for request in requests):
            self._require(task)
        prompts = [self.encode(request.instruction, request.input) for request in requests]
        import torch
        from transformers import GenerationConfig

        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=self._eos_id,
            pad_token_id=self._pad_id,
        )
        outputs: list[str] = [""] * len(prompts)
        with self._lock, torch.inference_mode(), _stop_between_layers(self._model, should_stop):
            for batch in self._batches(prompts):
                if should_stop is not None and should_stop():
                    raise GenerationStopped()
                tasks = [requests[i].task for i in batch]
                input_ids, attention_mask = self._left_pad([prompts[i] for i in batch])
                extra = {}
                if len(set(tasks)) == 1:
                    self._model.set_adapter(tasks[0], inference_mode=True)
                else:
                    extra["adapter_names"] = tasks
                generated = self._model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=config,
                    **extra,
                )
                if should_stop is not None and should_stop():
                    raise GenerationStopped()
                new_tokens = generated[:, input_ids.shape[1] :].tolist()
                for index, tokens in zip(batch, new_tokens, strict=True):
                    outputs[index] = self._decode(tokens)
        return outputs

    # -- helpers ---------------------------------------------------------------------------

    def _require(self, task: str) -> None:
        if task not in self._adapters:
            have = ", ".join(self._adapters) or "none"
            raise HunkwiseError(
                f"the bundle at {self._bundle} has no {task!r} adapter (it has: {have}); "
                f"train one with `hunkwise train --tasks {task}` or `hunkwise train-from-repo`"
            )

    def _batches(self, prompts: list[list[int]]) -> list[list[int]]:
        """Indices of ``prompts`` in batches of similar length, to cut padding."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _left_pad(self, prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, attention_mask = left_pad(self._tokenizer, prompts)
        return input_ids.to(self._device), attention_mask.to(self._device)

    def _decode(self, tokens: list[int]) -> str:
        if self._eos_id is not None and self._eos_id in tokens:
            tokens = tokens[: tokens.index(self._eos_id)]
        return clean_generated(self._tokenizer.decode(tokens, skip_special_tokens=True))


@contextlib.contextmanager
def _stop_between_layers(model, should_stop: Callable[[], bool] | None) -> Iterator[None]:
    """Ask ``should_stop`` before each decoder layer (the children of the model's
    ``ModuleList``s): every generated token is a forward pass, so a generation stops
    within a layer's time, in the prompt's prefill too: GenerationStopped out of generate."""
    if should_stop is None:
        yield
        return
    import torch

    def check(module, args) -> None:
        if should_stop():
            raise GenerationStopped()

    handles = [
        layer.register_forward_pre_hook(check)
        for module in model.modules()
        if isinstance(module, torch.nn.ModuleList)
        for layer in module
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def clean_generated(text: str) -> str:
    """A generated text as served: a model can emit any byte, and editors' JSON parsers
    reject NUL and other control characters, so only newline and tab survive (and CR
    before a newline)."""
    return _CONTROL.sub("", text)


def hunk_text(hunk: Hunk | str) -> str:
    return hunk if isinstance(hunk, str) else hunk.text


def same_length(first: Sequence, second: Sequence, first_name: str, second_name: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"{len(first)} {first_name} but {len(second)} {second_name}")


def max_prompt_tokens(manifest: Manifest, context: int | None, max_new_tokens: int) -> int:
    """The prompt budget training used, when the manifest records it; else what fits the
    model's ``context`` (its max_position_embeddings) beside ``max_new_tokens``."""
    training = manifest.training if isinstance(manifest.training, dict) else {}
    recorded = training.get("max_prompt_tokens")
    if isinstance(recorded, int) and recorded > 0:
        return recorded
    if isinstance(context, int) and context > max_new_tokens:
        return min(context - max_new_tokens, 4 * _FALLBACK_MAX_PROMPT_TOKENS)
    return _FALLBACK_MAX_PROMPT_TOKENS
