"""When reviews run: one state per document, a debounce timer per change, generations so
that a newer version supersedes (and cancels) an older one's work, and waiting for a
generation's result. Knows nothing of models or diagnostics: it runs the review function
it is given."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types

from server.findings import Review
from training.review import Skip

#: How long a pull request may wait for a review before it is answered as it stands.
PULL_WAIT_SECONDS = 60.0


@dataclass
class DocumentState:
    """What the server knows about one document (open in the editor, or reviewed from
    disk by ``hunkwise.reviewWorkspace``)."""

    uri: str
    path: Path | None
    is_open: bool = True
    generation: int = 0
    review: Review | None = None
    published: list[types.Diagnostic] | None = None
    published_version: int | None = None
    result_id: str = "0"
    timer: asyncio.TimerHandle | None = None
    task: asyncio.Task | None = None
    disk_text: str | None = None
    #: what the review filters left out of its latest review (training.review.reviewable)
    skipped: tuple[Skip, ...] = ()
    #: why its latest review has no result (skipped, or nothing to score with), or None
    unreviewed: str | None = None
    #: event-loop time of the last didChange (comments wait for a pause after it)
    changed_at: float = float("-inf")
    #: changed since its latest review: the comments that review wanted are not wanted now
    edited: bool = False
    #: set once the RNP result for the latest generation is published (or skipped)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    #: set once its comments are in too
    complete: asyncio.Event = field(default_factory=asyncio.Event)


#: Runs one generation of a document's review: ``review(state, generation)``.
ReviewRun = Callable[[DocumentState, int], Awaitable[None]]


class Scheduler:
    """The documents and their pending reviews; every method runs on the event loop.
    ``review`` does the work; an exception it raises goes to ``failed(state, error)``
    (a bug must not take the server down)."""

    def __init__(
        self, review: ReviewRun, failed: Callable[[DocumentState, BaseException], None]
    ) -> None:
        self._review = review
        self._failed = failed
        self._docs: dict[str, DocumentState] = {}

    # -- the documents -----------------------------------------------------------------

    def get(self, uri: str) -> DocumentState | None:
        return self._docs.get(uri)

    def add(self, state: DocumentState) -> DocumentState:
        self._docs[state.uri] = state
        return state

    def remove(self, uri: str) -> DocumentState | None:
        """Forget ``uri``, cancelling its pending and running review."""
        state = self._docs.pop(uri, None)
        if state is not None:
            self.cancel(state)
        return state

    def __iter__(self) -> Iterator[DocumentState]:
        return iter(list(self._docs.values()))

    @property
    def open_count(self) -> int:
        return sum(1 for state in self._docs.values() if state.is_open)

    # -- runs --------------------------------------------------------------------------

    def schedule(self, state: DocumentState, delay: float) -> None:
        """Start a review of ``state`` after ``delay`` seconds, superseding any other."""
        self.cancel(state)
        state.generation += 1
        generation = state.generation
        # Wake whoever waits on the superseded generation; they wait again on the new one.
        state.settled.set()
        state.complete.set()
        state.settled, state.complete = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(delay, self._start, state, generation)

    def schedule_open(self) -> None:
        """Review every open document again now (settings or bundle changed)."""
        for state in self:
            if state.is_open:
                self.schedule(state, 0.0)

    def cancel(self, state: DocumentState) -> None:
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        if state.task is not None and not state.task.done():
            state.task.cancel()

    def stop(self) -> None:
        """Cancel every pending and running review."""
        for state in self._docs.values():
            self.cancel(state)

    def _start(self, state: DocumentState, generation: int) -> None:
        state.timer = None
        if generation == state.generation:
            state.task = asyncio.ensure_future(self._run(state, generation))

    async def _run(self, state: DocumentState, generation: int) -> None:
        try:
            await self._review(state, generation)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._failed(state, error)
        finally:
            if generation == state.generation:
                state.settled.set()
                state.complete.set()

    async def wait(self, state: DocumentState, complete: bool = False) -> None:
        """Until the latest generation of ``state`` is published (``complete``: with its
        comments), or PULL_WAIT_SECONDS pass."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PULL_WAIT_SECONDS
        while True:
            event = state.complete if complete else state.settled
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return
            current = state.complete if complete else state.settled
            if event is current:
                return
