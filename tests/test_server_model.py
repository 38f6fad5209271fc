"""The model host's worker thread with a STAND-IN engine (no model): priority order, stale
jobs skipped, loads that supersede each other, errors that leave the worker running."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from server.model import ModelHost, ModelState, NoModel, Priority
from training.bundle import BundleError
from training.errors import GenerationStopped


class StandInEngine:
    batch_size = 4
    max_new_tokens = 8
    info = SimpleNamespace(adapters=("rnp",), device="cpu")


def _loader(bundle: Path, device: str, max_new_tokens: int) -> StandInEngine:
    if not bundle.exists():
        raise BundleError(f"no hunkwise bundle at {bundle}")
    if (bundle / "corrupt").exists():
        raise RuntimeError("safetensors: invalid header")
    return StandInEngine()


def _run(test) -> None:
    async def main() -> None:
        host = ModelHost(_loader)
        host.start(asyncio.get_running_loop())
        try:
            await test(host)
        finally:
            await asyncio.get_running_loop().run_in_executor(None, host.stop)

    asyncio.run(main())


def test_jobs_wait_for_a_bundle_and_run_by_priority(tmp_path: Path) -> None:
    async def test(host: ModelHost) -> None:
        with pytest.raises(NoModel):
            await host.submit(lambda engine: 1, Priority.SCORE)
        outcome = await host.load(tmp_path, "cpu", 8)
        assert outcome.state is ModelState.READY and host.state is ModelState.READY
        gate, order = threading.Event(), []
        blocker = host.submit(lambda engine: gate.wait(5), Priority.SCORE)
        futures = [
            host.submit(lambda engine, name=name: order.append(name), priority)
            for name, priority in (
                ("comment", Priority.COMMENT),
                ("score", Priority.SCORE),
                ("edit", Priority.EDIT),
            )
        ]
        stale = host.submit(lambda engine: order.append("stale"), Priority.EDIT, lambda: True)
        gate.set()
        await blocker
        await asyncio.gather(*futures)
        assert order == ["edit", "score", "comment"]
        assert stale.cancelled()

    _run(test)


def test_load_failures_and_superseded_loads(tmp_path: Path) -> None:
    async def test(host: ModelHost) -> None:
        missing = await host.load(tmp_path / "missing", "cpu", 8)
        assert missing.state is ModelState.NO_BUNDLE and "no hunkwise bundle" in missing.message
        corrupt = tmp_path / "corrupt-bundle"
        (corrupt / "corrupt").mkdir(parents=True)
        failed = await host.load(corrupt, "cpu", 8)
        assert failed.state is ModelState.ERROR and host.state is ModelState.ERROR
        assert failed.message == "RuntimeError: safetensors: invalid header"
        first = host.load(corrupt, "cpu", 8)
        second = host.load(tmp_path, "cpu", 8)
        assert (await first).superseded
        assert (await second).state is ModelState.READY
        assert host.bundle_key.startswith(str(tmp_path.resolve()))

    _run(test)


def test_a_failing_job_leaves_the_worker_running(tmp_path: Path) -> None:
    async def test(host: ModelHost) -> None:
        await host.load(tmp_path, "cpu", 8)

        def out_of_memory(engine):
            raise MemoryError("CUDA out of memory")

        with pytest.raises(MemoryError):
            await host.submit(out_of_memory, Priority.SCORE)
        assert await host.submit(lambda engine: engine.batch_size, Priority.SCORE) == 4

    _run(test)


def _generating(host: ModelHost, log: list[str], name: str, tokens: int = 200):
    """A job that "generates" ``tokens`` tokens of 5 ms, asking ``should_stop`` between
    them as the engine's per-layer check does."""

    def run(engine) -> str:
        log.append(f"{name} started")
        for _ in range(tokens):
            if host.should_stop():
                log.append(f"{name} stopped")
                raise GenerationStopped()
            time.sleep(0.005)
        log.append(f"{name} done")
        return name

    return run


def test_an_urgent_job_interrupts_a_generation_which_then_runs_again(tmp_path: Path) -> None:
    async def test(host: ModelHost) -> None:
        await host.load(tmp_path, "cpu", 8)
        log: list[str] = []
        comment = host.submit(
            _generating(host, log, "comment"), Priority.COMMENT, interruptible=True
        )
        while "comment started" not in log:
            await asyncio.sleep(0.005)
        started = time.perf_counter()
        score = await host.submit(lambda engine: log.append("score") or 0.5, Priority.SCORE)
        waited = time.perf_counter() - started
        assert score == 0.5
        assert waited < 0.5  # not the generation's whole second
        assert await comment == "comment"
        assert log == ["comment started", "comment stopped", "score", "comment started",
                       "comment done"]  # fmt: skip
        assert host.jobs_interrupted == 1

    _run(test)


def test_a_generation_stops_when_unwanted_and_edits_are_not_interrupted(tmp_path: Path) -> None:
    async def test(host: ModelHost) -> None:
        await host.load(tmp_path, "cpu", 8)
        log: list[str] = []
        wanted = True
        stale = host.submit(
            _generating(host, log, "stale"), Priority.COMMENT, lambda: not wanted, True
        )
        while "stale started" not in log:
            await asyncio.sleep(0.005)
        wanted = False  # its document changed: nobody wants this comment now
        with pytest.raises(asyncio.CancelledError):
            await stale
        assert log == ["stale started", "stale stopped"]
        # A cancelled request stops its edit between tokens, and the worker goes on.
        edit = host.submit(_generating(host, log, "edit"), Priority.EDIT)
        while "edit started" not in log:
            await asyncio.sleep(0.005)
        edit.cancel()
        assert await host.submit(lambda engine: "next", Priority.SCORE) == "next"
        assert log[-2:] == ["edit started", "edit stopped"]
        # An edit is never interrupted by other work (even a load-free score job).
        edit = host.submit(_generating(host, log, "edit2", tokens=40), Priority.EDIT)
        while "edit2 started" not in log:
            await asyncio.sleep(0.005)
        score = host.submit(lambda engine: log.append("score2"), Priority.SCORE)
        assert await edit == "edit2"
        await score
        assert log[-3:] == ["edit2 started", "edit2 done", "score2"]
        assert host.jobs_interrupted == 0

    _run(test)
