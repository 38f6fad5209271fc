"""A STAND-IN engine and a STAND-IN trainer for the language server's protocol-only tests
(model errors, slow models, pull diagnostics, cancellation) and its fuzz: the real server
runs over stdio with these plugged in instead of torch. The main path is tested with a
real bundle.

``python bench/lsp_harness/stand_in_engine.py`` starts the server; ``... train-child ARGS`` is the
stand-in for ``hunkwise train-from-repo ARGS`` that the server starts.

Stand-in rules: a hunk that adds a ``print(`` scores 0.9, any other 0.1; a hunk containing
``OOM!`` raises MemoryError; every comment is "Remove the debug print." and its evidence
the one past fix ``PAST_FIX``; a refinement drops
the ``print(`` lines; an edit upper-cases the code. A bundle is a directory whose
``manifest.json`` says ``"stand_in": true``; its ``"delay"`` (seconds) slows every call.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from training.bundle import BundleError, bundle_writer  # noqa: E402
from training.errors import GenerationStopped  # noqa: E402
from training.evidence import Evidence  # noqa: E402
from training.progress import (  # noqa: E402
    JsonProgress,
    expect_bars,
    json_progress,
    progress_bar,
    progress_phase,
)
from training.tasks import ADAPTER_TASKS  # noqa: E402

COMMENT = "Remove the debug print."
#: The evidence of every hunk that adds a ``print(``.
PAST_FIX = Evidence(
    commit="3f2a1c0d" * 5,
    time="2024-01-03T10:00:00+00:00",
    path="net/util.py",
    function="def port(value):",
    fix_commit="9b7e0d1a" * 5,
    fix_time="2024-01-09T10:00:00+00:00",
    fix_subject="Drop the leftover print in port()",
    source="history",
    similarity=0.61,
)


class StandInEngine:
    """Answers like ``training.engine.Engine`` by fixed rules, without a model."""

    batch_size = 4
    default_threshold = 0.5

    def __init__(
        self, bundle: Path, max_new_tokens: int, delay: float, tasks=ADAPTER_TASKS
    ) -> None:
        self.max_new_tokens = max_new_tokens
        self.delay = delay
        self.tasks = tuple(tasks)
        self.info = SimpleNamespace(
            bundle=bundle, base_model="stand-in", adapters=self.tasks, device="cpu"
        )

    def has_task(self, task: str) -> bool:
        return task in self.tasks

    def _work(self, texts: list[str], should_stop=None) -> None:
        """Sleep ``delay`` seconds; a generating call (with ``should_stop``) sleeps in
        "tokens" of 10 ms and stops between them as the real engine does."""
        if should_stop is None:
            time.sleep(self.delay)
        else:
            deadline = time.monotonic() + self.delay
            while time.monotonic() < deadline:
                if should_stop():
                    raise GenerationStopped()
                time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        if any("OOM!" in text for text in texts):
            raise MemoryError("stand-in engine: CUDA out of memory")

    def score(self, hunks) -> list[float]:
        self._work([hunk.text for hunk in hunks])
        return [0.9 if any("print(" in line for _, line in hunk.added) else 0.1 for hunk in hunks]

    def comment(self, hunks, should_stop=None) -> list[str]:
        self._work([hunk.text for hunk in hunks], should_stop)
        return [COMMENT for _ in hunks]

    def evidence(self, hunks) -> list[list[Evidence]]:
        return [[PAST_FIX] if "print(" in hunk.text else [] for hunk in hunks]

    def refine(self, codes, comments, should_stop=None) -> list[str]:
        self._work(list(codes), should_stop)
        return ["\n".join(x for x in code.split("\n") if "print(" not in x) for code in codes]

    def edit(self, codes, instructions, should_stop=None) -> list[str]:
        self._work(list(codes), should_stop)
        return [code.upper() for code in codes]


def load_stand_in(bundle: Path, device: str, max_new_tokens: int) -> StandInEngine:
    manifest_path = Path(bundle) / "manifest.json"
    if not Path(bundle).exists():
        raise BundleError(
            f"no hunkwise bundle at {bundle}; train one with `hunkwise train-from-repo`"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BundleError(f"{manifest_path} cannot be read ({error})") from error
    if not manifest.get("stand_in"):
        raise BundleError(f"{bundle} is not a stand-in bundle")
    return StandInEngine(
        Path(bundle),
        max_new_tokens,
        float(manifest.get("delay", 0.0)),
        manifest.get("tasks", ADAPTER_TASKS),
    )


def write_stand_in_bundle(path: Path, delay: float = 0.0, tasks=ADAPTER_TASKS) -> Path:
    """A stand-in bundle; ``tasks`` are the adapters it says it has."""
    path.mkdir(parents=True, exist_ok=True)
    manifest = {"stand_in": True, "delay": delay, "tasks": list(tasks)}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def train_child(args: list[str]) -> int:
    """Stands in for ``hunkwise train-from-repo REPO --base B --out BUNDLE [--tasks T]``:
    prints progress, then writes the bundle atomically as the real trainer does. The JSON
    file named by HUNKWISE_STAND_IN_CONTROL sets its "steps", their "seconds" and a
    "pid_file" to write its pid to."""
    from training.cli import handle_stop_signals

    handle_stop_signals()  # as the real `hunkwise` command does
    control_path = os.environ.get("HUNKWISE_STAND_IN_CONTROL")
    control = json.loads(Path(control_path).read_text()) if control_path else {}
    if control.get("pid_file"):
        Path(control["pid_file"]).write_text(str(os.getpid()))
    assert args[0] == "train-from-repo", args
    assert args[args.index("--progress") + 1] == "json", args
    out = Path(args[args.index("--out") + 1])
    steps, seconds = int(control.get("steps", 3)), float(control.get("seconds", 0.05))
    # The real trainer's JSON progress lines (training.progress), messages on stderr.
    sink = JsonProgress(sys.stdout, [("mine", 1.0), ("train", 9.0)], interval=0.0)
    print(f"mining {args[1]}", file=sys.stderr, flush=True)
    with json_progress(sink), bundle_writer(out) as temp:
        with progress_phase("mine"), progress_bar(None, "Mining history", 2) as advance:
            advance(2)
        with progress_phase("train"):
            expect_bars(1)
            with progress_bar(None, "rnp", steps) as advance:
                for step in range(1, steps + 1):
                    (temp / f"step-{step}").write_text("partial")
                    advance(1, loss=1.0 / step)
                    time.sleep(seconds)
        write_stand_in_bundle(temp)
    print(f"bundle written to {out}", file=sys.stderr, flush=True)
    sink.finish(bundle=str(out))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["train-child"]:
        return train_child(sys.argv[2:])
    os.environ["GIT_OPTIONAL_LOCKS"] = "0"
    from server.server import create_server

    server = create_server(
        loader=load_stand_in, train_command=(sys.executable, __file__, "train-child")
    )
    try:
        server.start_io()
    finally:
        if not server.shut_down_cleanly:
            server.close()
    return 0 if server.shut_down_cleanly else 1


if __name__ == "__main__":
    sys.exit(main())
