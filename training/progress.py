"""Progress bars and summary tables for long commands (rich), shared by every command;
and the same progress as JSON lines for a program that runs one (``--progress json``: the
language server's "Train from Repository").

Each JSON line is one object::

    {"stage": "rnp", "phase": "train", "step": 21, "total": 50, "loss": 0.412,
     "eta": 12.5, "percent": 47}

``stage`` is the bar's name (``Mining history``, ``stage 0``, ``rnp``, ``Evaluating rcg``
...); ``phase`` the part of the whole job it belongs to (``mine``, ``train``,
``evaluate``); ``step``/``total`` the bar's count (``total`` null when unknown); ``loss``
the latest training loss (training bars only); ``eta`` the bar's seconds left (null until
known); ``percent`` the whole job's progress, 0-100, never decreasing. The last line of a
finished job is ``{"stage": "done", "percent": 100, ...}`` with its result.
"""

from __future__ import annotations

import contextvars
import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


class JsonProgress:
    """Writes progress events as JSON lines to ``stream``, throttled to one line per
    ``interval`` seconds and bar (a bar's first and last steps always).

    The job is a sequence of weighted phases; within a phase each bar is one of
    :meth:`expect`'s parts (or, beyond them, half of what is left), so ``percent`` rises
    monotonically however many bars a phase turns out to run."""

    def __init__(
        self, stream: IO[str], phases: Sequence[tuple[str, float]], interval: float = 0.25
    ) -> None:
        self._stream = stream
        #: seconds between two lines of one bar (its first and last lines always come)
        self.interval = interval
        total = sum(weight for _, weight in phases) or 1.0
        self._phases: dict[str, tuple[float, float]] = {}
        start = 0.0
        for name, weight in phases:
            self._phases[name] = (start, start + weight / total)
            start += weight / total
        self._phase = ""
        self._range = (0.0, 0.0)  # the current phase's share of the whole job
        self._parts = 0
        self._bars = 0
        self._percent = 0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        # One bar unless the phase says otherwise (expect).
        self._phase, self._parts, self._bars = name, 1, 0
        self._range = self._phases.get(name, (self._percent / 100, self._percent / 100))
        try:
            yield
        finally:
            self._move(self._range[1])

    def expect(self, parts: int) -> None:
        """The current phase will run ``parts`` bars (each gets an equal share)."""
        self._parts, self._bars = max(parts, 0), 0

    def bar(self, stage: str, total: int | None) -> _JsonBar:
        low, high = self._range
        if self._bars < self._parts:
            share = (high - low) / self._parts
            start = low + share * self._bars
            span = (start, start + share)
        else:  # more bars than expected: half of what the phase has left
            done = max(low, self._percent / 100)
            span = (done, done + (high - done) / 2)
        self._bars += 1
        return _JsonBar(self, stage, total, span)

    def emit(self, event: dict[str, Any], fraction: float | None = None) -> None:
        if fraction is not None:
            self._move(fraction)
        self._stream.write(json.dumps({**event, "percent": self._percent}) + "\n")
        self._stream.flush()

    def finish(self, **result: Any) -> None:
        self._percent = 100
        self.emit({"stage": "done", **result})

    def _move(self, fraction: float) -> None:
        self._percent = max(self._percent, min(100, math.floor(fraction * 100)))

    @property
    def phase_name(self) -> str:
        return self._phase


class _JsonBar:
    def __init__(
        self, sink: JsonProgress, stage: str, total: int | None, span: tuple[float, float]
    ) -> None:
        self.sink, self.stage, self.total, self.span = sink, stage, total, span
        self.interval = sink.interval
        self.step = 0
        self.started = time.monotonic()
        self.last = float("-inf")
        self.loss: float | None = None
        self.report(force=True)

    def advance(self, n: int = 1, loss: float | None = None) -> None:
        self.step += n
        if loss is not None:
            self.loss = loss
        self.report(force=self.total is not None and self.step >= self.total)

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        total = self.total
        eta = None
        if total and self.step:
            eta = round((now - self.started) / self.step * max(total - self.step, 0), 1)
        fraction = None
        if total:
            low, high = self.span
            fraction = low + (high - low) * min(self.step / total, 1.0)
        event = {
            "stage": self.stage,
            "phase": self.sink.phase_name,
            "step": self.step,
            "total": total,
            "loss": None if self.loss is None else round(self.loss, 4),
            "eta": eta,
        }
        self.sink.emit(event, fraction)


_SINK: contextvars.ContextVar[JsonProgress | None] = contextvars.ContextVar(
    "hunkwise_json_progress", default=None
)


@contextmanager
def json_progress(sink: JsonProgress) -> Iterator[JsonProgress]:
    """Every progress bar opened inside also reports to ``sink``."""
    token = _SINK.set(sink)
    try:
        yield sink
    finally:
        _SINK.reset(token)


def progress_phase(name: str):
    """Enter phase ``name`` of the JSON progress, if one is being reported."""
    sink = _SINK.get()
    return sink.phase(name) if sink is not None else nullcontext()


def expect_bars(parts: int) -> None:
    """The current phase will run ``parts`` progress bars (for the JSON percentages)."""
    sink = _SINK.get()
    if sink is not None:
        sink.expect(parts)


@contextmanager
def progress_bar(console: Console | None, description: str, total: int | None):
    """Yield ``advance(n, loss=None)``: a rich progress bar when ``console`` is set, and
    JSON progress lines when :func:`json_progress` is on; else a no-op."""
    sink = _SINK.get()
    bar = sink.bar(description, total) if sink is not None else None
    rich = _rich_bar(console, description, total) if console is not None else nullcontext()
    with rich as rich_advance:

        def advance(n: int = 1, loss: float | None = None) -> None:
            if rich_advance is not None:
                rich_advance(n)
            if bar is not None:
                bar.advance(n, loss)

        yield advance


@contextmanager
def _rich_bar(console: Console, description: str, total: int | None):
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def summary_table(stats: dict, title: str) -> Table:
    """Records per task and split (rnp with its yes/no balance), from a ``stats.json`` dict."""
    table = Table(title=title)
    table.add_column("task")
    for name in ("train", "valid", "test"):
        table.add_column(name, justify="right")
    table.add_column("labels", justify="left")
    for task, splits in stats.get("splits", {}).items():
        labels: dict[str, int] = {}
        for entry in splits.values():
            for label, count in entry.get("labels", {}).items():
                labels[label] = labels.get(label, 0) + count
        table.add_row(
            task,
            *(str(splits.get(name, {}).get("records", 0)) for name in ("train", "valid", "test")),
            ", ".join(f"{label} {count}" for label, count in labels.items()),
        )
    skipped = stats.get("skipped") or {}
    if skipped:
        table.caption = "skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
    return table
