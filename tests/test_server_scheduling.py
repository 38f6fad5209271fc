"""server.scheduling without a server process: debounce, supersession, cancellation,
waiting for a generation, and a failing review reported, not raised."""

from __future__ import annotations

import asyncio

import pytest

from server import scheduling
from server.scheduling import DocumentState, Scheduler


class Recorder:
    """A review function that records its runs and, per call, waits ``delay`` seconds."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay = delay
        self.fail = fail
        self.started: list[int] = []
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    async def __call__(self, state: DocumentState, generation: int) -> None:
        self.started.append(generation)
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.append(generation)
            raise
        if self.fail:
            raise ValueError("the review broke")
        self.finished.append(generation)


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_burst_of_changes_runs_one_review_after_the_debounce() -> None:
    async def main() -> Recorder:
        review = Recorder()
        scheduler = Scheduler(review, lambda state, error: pytest.fail(str(error)))
        state = scheduler.add(DocumentState("file:///a.py", None))
        for _ in range(5):
            scheduler.schedule(state, 0.05)
            await asyncio.sleep(0.01)
        await scheduler.wait(state)
        return review

    review = run(main())
    assert review.started == [5] and review.finished == [5]


def test_a_newer_generation_cancels_the_running_review() -> None:
    async def main() -> tuple[Recorder, DocumentState]:
        review = Recorder(delay=0.2)
        scheduler = Scheduler(review, lambda state, error: pytest.fail(str(error)))
        state = scheduler.add(DocumentState("file:///a.py", None))
        scheduler.schedule(state, 0.0)
        await asyncio.sleep(0.05)  # generation 1 is running
        scheduler.schedule(state, 0.0)
        await scheduler.wait(state)
        return review, state

    review, state = run(main())
    assert review.started == [1, 2] and review.cancelled == [1] and review.finished == [2]
    assert state.generation == 2 and state.settled.is_set()


def test_a_waiter_on_a_superseded_generation_waits_for_the_new_one() -> None:
    async def main() -> Recorder:
        review = Recorder(delay=0.05)
        scheduler = Scheduler(review, lambda state, error: pytest.fail(str(error)))
        state = scheduler.add(DocumentState("file:///a.py", None))
        scheduler.schedule(state, 0.0)
        waiter = asyncio.ensure_future(scheduler.wait(state))
        await asyncio.sleep(0.01)
        scheduler.schedule(state, 0.0)  # wakes the waiter, which waits again
        await waiter
        return review

    review = run(main())
    assert review.finished == [2]


def test_removing_a_document_cancels_its_pending_review() -> None:
    async def main() -> Recorder:
        review = Recorder()
        scheduler = Scheduler(review, lambda state, error: pytest.fail(str(error)))
        state = scheduler.add(DocumentState("file:///a.py", None))
        scheduler.schedule(state, 0.05)
        assert scheduler.remove(state.uri) is state and scheduler.get(state.uri) is None
        await asyncio.sleep(0.1)
        return review

    assert run(main()).started == []


def test_a_failing_review_is_reported_and_settles_its_waiters() -> None:
    failures: list[tuple[str, str]] = []

    async def main() -> None:
        scheduler = Scheduler(
            Recorder(fail=True), lambda state, error: failures.append((state.uri, str(error)))
        )
        state = scheduler.add(DocumentState("file:///a.py", None))
        scheduler.schedule(state, 0.0)
        await asyncio.wait_for(scheduler.wait(state, complete=True), 5)

    run(main())
    assert failures == [("file:///a.py", "the review broke")]


def test_a_wait_gives_up_after_the_pull_deadline(monkeypatch) -> None:
    monkeypatch.setattr(scheduling, "PULL_WAIT_SECONDS", 0.05)

    async def main() -> float:
        scheduler = Scheduler(Recorder(delay=10), lambda state, error: None)
        state = scheduler.add(DocumentState("file:///a.py", None))
        scheduler.schedule(state, 0.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await scheduler.wait(state)
        waited = loop.time() - start
        scheduler.stop()
        return waited

    assert run(main()) < 1.0


def test_schedule_open_reviews_open_documents_only() -> None:
    async def main() -> tuple[DocumentState, DocumentState]:
        scheduler = Scheduler(Recorder(), lambda state, error: None)
        shown = scheduler.add(DocumentState("file:///a.py", None))
        on_disk = scheduler.add(DocumentState("file:///b.py", None, is_open=False))
        scheduler.schedule_open()
        await scheduler.wait(shown)
        assert scheduler.open_count == 1
        return shown, on_disk

    shown, on_disk = run(main())
    assert shown.generation == 1 and on_disk.generation == 0
