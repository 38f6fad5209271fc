"""``hunkwise.trainFromRepo``: run ``hunkwise train-from-repo --progress json`` on the
workspace's repository as a child process, relay its JSON progress lines as progress, and stop it (its whole process group) on
cancellation. The trainer writes bundles atomically, so a stopped run leaves the previous
bundle, if any, in place; the server itself writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from training.gitio.command import NO_OPTIONAL_LOCKS

#: How the server starts the trainer: the ``hunkwise`` command of this interpreter.
TRAIN_COMMAND: tuple[str, ...] = (sys.executable, "-c", "from training.cli import main; main()")
#: After SIGINT (which lets Python clean up), then SIGTERM, before SIGKILL.
STOP_GRACE_SECONDS = (5.0, 3.0)


@dataclass(frozen=True)
class TrainingOutcome:
    returncode: int | None
    cancelled: bool
    output: str


def train_arguments(
    command: Sequence[str], repo: Path, bundle: Path, base: str, tasks: Sequence[str]
) -> list[str]:
    args = [
        *command,
        "train-from-repo",
        str(repo),
        "--base",
        base,
        "--out",
        str(bundle),
        "--progress",
        "json",
    ]
    if tasks:
        args += ["--tasks", ",".join(tasks)]
    return args


@dataclass(frozen=True)
class ProgressLine:
    """What one line of the trainer's output says: a message and, for its JSON progress
    events (``training.progress.JsonProgress``), the whole job's percentage."""

    message: str
    percentage: int | None = None
    #: the event said the run is done (its result is in ``event``)
    done: bool = False
    event: dict | None = None


def read_progress(line: str) -> ProgressLine:
    """A trainer output line as progress: a JSON event ("rnp: 21/50 steps, loss 0.412,
    12 s left" at its percent), or any other line as a message."""
    try:
        event = json.loads(line) if line.startswith("{") else None
    except ValueError:
        event = None
    if not isinstance(event, dict) or "stage" not in event:
        return ProgressLine(line[:200])
    percent = event.get("percent")
    percentage = min(max(int(percent), 0), 100) if isinstance(percent, int | float) else None
    stage = str(event["stage"])[:80]
    if stage == "done":
        return ProgressLine("finishing", percentage, done=True, event=event)
    parts = [stage]
    step, total = event.get("step"), event.get("total")
    if isinstance(step, int) and isinstance(total, int) and total > 0:
        parts.append(f"{step}/{total}")
    loss = event.get("loss")
    if isinstance(loss, int | float):
        parts.append(f"loss {loss:.3g}")
    eta = event.get("eta")
    if isinstance(eta, int | float) and eta > 0:
        parts.append(f"{_duration(eta)} left")
    return ProgressLine(", ".join(parts), percentage, event=event)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


async def run_training(
    args: Sequence[str],
    cwd: Path,
    on_line: Callable[[str], None],
    cancelled: Callable[[], bool],
    poll_seconds: float = 0.2,
) -> TrainingOutcome:
    """Run the trainer until it exits or ``cancelled()`` turns true (then stop it)."""
    env = {
        **os.environ,
        **NO_OPTIONAL_LOCKS,
        "PYTHONUNBUFFERED": "1",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "COLUMNS": "120",
    }
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=str(cwd),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops its children
    )
    tail: deque[str] = deque(maxlen=20)
    reader = asyncio.ensure_future(_read_lines(process, on_line, tail))
    stopped = False
    try:
        while process.returncode is None:
            if cancelled():
                stopped = True
                await stop_process_group(process)
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), poll_seconds)
    except asyncio.CancelledError:
        await stop_process_group(process)
        raise
    finally:
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(reader, 5.0)
    return TrainingOutcome(process.returncode, stopped, "\n".join(tail))


async def _read_lines(
    process: asyncio.subprocess.Process, on_line: Callable[[str], None], tail: deque[str]
) -> None:
    assert process.stdout is not None
    pending = ""
    while True:
        chunk = await process.stdout.read(4096)
        if not chunk:
            break
        pending += chunk.decode("utf-8", errors="replace")
        # Progress bars redraw with "\r": every redraw is a line here.
        *lines, pending = re.split(r"\r\n|\r|\n", pending)
        for line in lines:
            if line.strip():
                tail.append(line.rstrip())
                on_line(line.strip())
    if pending.strip():
        tail.append(pending.rstrip())
        on_line(pending.strip())


async def stop_process_group(process: asyncio.subprocess.Process) -> None:
    """SIGINT the child's group (Python cleans up its temp dirs), then SIGTERM, then
    SIGKILL, each after a grace period."""
    for sig, grace in (
        (signal.SIGINT, STOP_GRACE_SECONDS[0]),
        (signal.SIGTERM, STOP_GRACE_SECONDS[1]),
    ):
        if process.returncode is not None:
            return
        _signal_group(process.pid, sig)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    if process.returncode is None:
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
