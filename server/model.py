"""The model side of the server: one worker thread that loads the bundle and runs every
inference job from a priority queue, so the event loop never waits for the model, and
caches of results keyed by hunk content and bundle. torch and the engine are imported by
the worker when the first bundle load begins, never on the start-up path."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from training.errors import GenerationStopped
from training.hunks import Hunk

log = logging.getLogger(__name__)


class ReviewEngine(Protocol):
    """What the server needs of ``training.engine.Engine`` (a stand-in may provide it)."""

    batch_size: int
    max_new_tokens: int

    @property
    def info(self) -> Any: ...

    @property
    def default_threshold(self) -> float: ...

    def has_task(self, task: str) -> bool: ...

    def score(self, hunks: Sequence[Hunk]) -> list[float]: ...

    # The generating tasks ask ``should_stop()`` between tokens and raise
    # training.errors.GenerationStopped once it says true.
    def comment(
        self, hunks: Sequence[Hunk], should_stop: Callable[[], bool] | None = None
    ) -> list[str]: ...

    def refine(
        self,
        codes: Sequence[str],
        comments: Sequence[str],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]: ...

    def edit(
        self,
        codes: Sequence[str],
        instructions: Sequence[str],
        should_stop: Callable[[], bool] | None = None,
    ) -> list[str]: ...


#: ``loader(bundle, device, max_new_tokens, **remote)``: ``remote`` is empty for the local
#: engine, else ``engine`` (a URL) and ``engine_model`` (see training.remote).
EngineLoader = Callable[..., ReviewEngine]


def load_engine(bundle: Path, device: str, max_new_tokens: int, **remote: str) -> ReviewEngine:
    """The real loader: the manifest is checked first (no torch needed to say a bundle is
    missing or broken), then ``Engine.load`` imports torch and loads the adapters, or a
    remote engine is asked what it serves."""
    from training.bundle import read_manifest

    read_manifest(bundle)
    from training.remote import open_engine

    return open_engine(bundle, device=device, max_new_tokens=max_new_tokens, **remote)


class ModelState(str, enum.Enum):
    LOADING = "loading"
    READY = "ready"
    NO_BUNDLE = "no-bundle"
    ERROR = "error"


class NoModel(Exception):
    """No engine to run a job: the bundle is missing, failed to load, or was replaced."""


class Priority(enum.IntEnum):
    """Lower runs first: a bundle load, then what a user waits for (edits, refinements),
    then review-necessity scores, then review comments."""

    STOP = -1
    LOAD = 0
    EDIT = 1
    SCORE = 2
    COMMENT = 3


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    run: Callable[[], Any] | None = field(compare=False)
    future: asyncio.Future | None = field(compare=False)
    is_stale: Callable[[], bool] = field(compare=False, default=lambda: False)
    #: more urgent work stops it between tokens; it is queued again (if still wanted)
    interruptible: bool = field(compare=False, default=False)


@dataclass(frozen=True)
class LoadOutcome:
    """What a bundle load came to (``state`` READY, NO_BUNDLE or ERROR)."""

    state: ModelState
    bundle: Path
    seconds: float
    message: str = ""
    superseded: bool = False


class ModelHost:
    """Owns the engine and the one thread that uses it.

    Everything public is called from the event loop; jobs run on the worker thread, in
    priority order, and a job whose result nobody wants any more (its future cancelled,
    or ``is_stale()``) is skipped when its turn comes. A running job that generates asks
    :meth:`should_stop` between tokens: it stops once nobody wants its result, and an
    interruptible one (review comments) also when a more urgent job is queued; it is then
    queued again behind that job.
    """

    def __init__(self, loader: EngineLoader) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # the server's, from `start`
        self._loader = loader
        self._queue: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._work, name="hunkwise-model", daemon=True)
        self._load_serial = 0
        self._stopping = False
        #: the job the worker runs, and whether it was asked to stop for a more urgent one
        self._running: _Job | None = None
        self._interrupt = threading.Event()
        self._running_lock = threading.Lock()
        # Written by the worker thread only; plain reads elsewhere.
        self.engine: ReviewEngine | None = None
        self.state = ModelState.NO_BUNDLE
        self.bundle: Path | None = None
        self.bundle_key = ""
        self.message = ""
        self.device = ""
        self.jobs_run = 0
        #: generations stopped for more urgent work and queued again
        self.jobs_interrupted = 0
        #: a job is running
        self.busy = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the worker; results are delivered to ``loop`` (the server's event loop)."""
        self._loop = loop
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called."""
        return self._loop is not None

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:  # before `initialize`: nothing can run yet
            raise NoModel("the review model is not started yet")
        return self._loop

    @property
    def queue_length(self) -> int:
        return self._queue.qsize()

    # -- jobs --------------------------------------------------------------------------

    def submit(
        self,
        run: Callable[[ReviewEngine], Any],
        priority: Priority,
        is_stale: Callable[[], bool] = lambda: False,
        interruptible: bool = False,
    ) -> asyncio.Future:
        """Queue ``run(engine)``; the future gets its result, its exception (NoModel when
        there is no engine), or is cancelled when the job was skipped as stale. ``run``
        passes :meth:`should_stop` to the engine's generating calls."""
        future = self._event_loop().create_future()

        def with_engine() -> Any:
            engine = self.engine
            if engine is None:
                raise NoModel(self.message or "no bundle is loaded")
            return run(engine)

        self._put(_Job(priority, next(self._seq), with_engine, future, is_stale, interruptible))
        return future

    def _put(self, job: _Job) -> None:
        if self._stopping:
            if job.future is not None:
                job.future.cancel()
            return
        with self._running_lock:
            self._queue.put(job)
            self._interrupt_for(job)

    def _interrupt_for(self, job: _Job) -> None:
        """Ask the running job to stop if it is interruptible and ``job`` comes first
        (called with ``_running_lock`` held)."""
        running = self._running
        if running is not None and running.interruptible and job.priority < running.priority:
            self._interrupt.set()

    def should_stop(self) -> bool:
        """For the running job (worker thread only): true once its result is not wanted
        (its future cancelled, or it went stale), or it was interrupted."""
        job = self._running
        if job is None:
            return False
        return (
            self._interrupt.is_set()
            or (job.future is not None and job.future.cancelled())
            or job.is_stale()
        )

    def load(self, bundle: Path, device: str, max_new_tokens: int, **remote: str) -> asyncio.Future:
        """Load ``bundle`` (replacing the current engine) ahead of every queued job; the
        future gets a :class:`LoadOutcome`. A newer load supersedes one not yet run."""
        self._load_serial += 1
        serial = self._load_serial
        self.state = ModelState.LOADING
        self.bundle = bundle
        self.message = ""
        future = self._event_loop().create_future()
        self._put(
            _Job(
                Priority.LOAD,
                next(self._seq),
                lambda: self._load(serial, bundle, device, max_new_tokens, remote),
                future,
            )
        )
        return future

    def _load(
        self, serial: int, bundle: Path, device: str, max_new_tokens: int, remote: dict
    ) -> LoadOutcome:
        started = time.perf_counter()
        if serial != self._load_serial:
            return LoadOutcome(ModelState.LOADING, bundle, 0.0, superseded=True)
        # Free the previous model before loading the next: two may not fit in memory.
        self._drop_engine()
        gc.collect()
        try:
            engine = self._loader(bundle, device, max_new_tokens, **remote)
        except Exception as error:
            state = ModelState.ERROR if bundle.exists() else ModelState.NO_BUNDLE
            message = describe_error(error)
            log.warning(
                "loading %s failed: %s", bundle, message, exc_info=state is ModelState.ERROR
            )
            if serial == self._load_serial:
                self.state, self.message, self.bundle_key = state, message, ""
            return LoadOutcome(state, bundle, time.perf_counter() - started, message)
        if serial != self._load_serial:
            return LoadOutcome(ModelState.LOADING, bundle, 0.0, superseded=True)
        info = engine.info
        self.device = str(getattr(info, "device", device))
        self.bundle_key = _bundle_key(bundle)
        self.engine = engine
        self.state = ModelState.READY
        self.message = ""
        return LoadOutcome(ModelState.READY, bundle, time.perf_counter() - started)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job.run is None:
                return
            future = job.future
            if future is not None and (future.cancelled() or job.is_stale()):
                self._deliver(future, None, None, cancel=True)
                continue
            with self._running_lock:
                self._running = job
                self._interrupt.clear()
                with self._queue.mutex:  # queued before the job was taken: it comes first
                    head = self._queue.queue[0] if self._queue.queue else None
                if head is not None:
                    self._interrupt_for(head)
            self.busy = True
            try:
                result = job.run()
            except GenerationStopped:
                self._stopped(job)
            except Exception as error:
                if not isinstance(error, NoModel):
                    log.warning("model job failed: %s", describe_error(error), exc_info=True)
                    _recover_memory()
                self._deliver(future, None, error)
            else:
                self.jobs_run += 1
                self._deliver(future, result, None)
            finally:
                with self._running_lock:
                    self._running = None
                self.busy = False

    def _stopped(self, job: _Job) -> None:
        """A generation stopped between tokens: run it again later if it was only
        interrupted and is still wanted, else drop it."""
        future = job.future
        wanted = not (self._stopping or (future is not None and future.cancelled()))
        if wanted and self._interrupt.is_set() and not job.is_stale():
            self.jobs_interrupted += 1
            log.debug("generation interrupted by a more urgent job; queued again")
            self._queue.put(job)  # its place: same priority and sequence number
        else:
            self._deliver(future, None, None, cancel=True)

    def _deliver(
        self,
        future: asyncio.Future | None,
        result: Any,
        error: BaseException | None,
        cancel: bool = False,
    ) -> None:
        if future is None:
            return

        def settle() -> None:
            if future.done():
                return
            if cancel:
                future.cancel()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        # RuntimeError: the event loop is closed, the server is exiting.
        with contextlib.suppress(RuntimeError):
            future.get_loop().call_soon_threadsafe(settle)

    def stop(self, timeout: float = 10.0) -> None:
        """Skip every queued job, let the running one finish (up to ``timeout``), end the
        thread and drop the engine."""
        self._stopping = True
        self._interrupt.set()  # a running generation stops at its next token
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job.future is not None:
                self._deliver(job.future, None, None, cancel=True)
        self._queue.put(_Job(Priority.STOP, -1, None, None))
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._drop_engine()

    def _drop_engine(self) -> None:
        """Let the engine go; a remote one's connections are closed."""
        engine, self.engine = self.engine, None
        close = getattr(engine, "close", None)
        if callable(close):
            close()


def _bundle_key(bundle: Path) -> str:
    """Results are cached per bundle version: its path and its manifest's mtime."""
    try:
        stamp = (bundle / "manifest.json").stat().st_mtime_ns
    except OSError:
        stamp = 0
    return f"{bundle.resolve()}@{stamp}"


def describe_error(error: BaseException) -> str:
    """A one-line message for an error a user may meet (no traceback)."""
    from training.errors import HunkwiseError

    if isinstance(error, HunkwiseError):
        return str(error)
    name = type(error).__name__
    text = " ".join(str(error).split())
    if "out of memory" in text.lower() or isinstance(error, MemoryError):
        return (
            f"the model ran out of memory ({name}: {text[:200]}); try a smaller batch or device=cpu"
        )
    return f"{name}: {text[:300]}" if text else name


def _recover_memory() -> None:
    """After a failed job (out of memory above all) give cached GPU memory back."""
    gc.collect()
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):
            torch.cuda.empty_cache()
