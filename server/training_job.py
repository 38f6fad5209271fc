"""``hunkwise.trainFromRepo``: run ``hunkwise train-from-repo`` on the workspace's repository
as a child process, relay its output as progress, and stop it (its whole process group) on
cancellation. The trainer writes bundles atomically, so a stopped run leaves the previous
bundle, if any, in place; the server itself writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: How the server starts the trainer: the ``hunkwise`` command of this interpreter.
TRAIN_COMMAND: tuple[str, ...] = (sys.executable, "-c", "from training.cli import main; main()")
#: After SIGINT (which lets Python clean up), then SIGTERM, before SIGKILL.
STOP_GRACE_SECONDS = (5.0, 3.0)

_FRACTION = re.compile(r"\b(\d+)\s*/\s*(\d+)\b")
_PERCENT = re.compile(r"\b(\d{1,3})(?:\.\d+)?\s*%")


@dataclass(frozen=True)
class TrainingOutcome:
    returncode: int | None
    cancelled: bool
    output: str


def train_arguments(
    command: Sequence[str], repo: Path, bundle: Path, base: str, tasks: Sequence[str]
) -> list[str]:
    args = [*command, "train-from-repo", str(repo), "--base", base, "--out", str(bundle)]
    if tasks:
        args += ["--tasks", ",".join(tasks)]
    return args


def progress_of(line: str) -> int | None:
    """A percentage read from a progress line ("42%" or "21/50"), if it has one."""
    match = _PERCENT.search(line)
    if match:
        return min(int(match.group(1)), 100)
    match = _FRACTION.search(line)
    if match and int(match.group(2)) > 0:
        return min(100 * int(match.group(1)) // int(match.group(2)), 100)
    return None


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
        "GIT_OPTIONAL_LOCKS": "0",
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
