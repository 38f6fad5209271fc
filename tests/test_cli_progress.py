"""``hunkwise train-from-repo --progress json``: the real command on a generated history,
in a subprocess: stdout carries only JSON progress lines (stage, step, total, loss, eta,
percent), the percentage never falls, training bars carry their loss, and the last line is
the result; the human messages go to stderr. Also the JSON sink's arithmetic on its own."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.hunkwise_command import hunkwise
from tests.learnable_repo import build_learnable_repo
from training.progress import JsonProgress, expect_bars, json_progress, progress_bar, progress_phase


@pytest.mark.slow
def test_train_from_repo_prints_json_progress_lines(tmp_path: Path) -> None:
    repo = build_learnable_repo(tmp_path / "repo", features=30)
    out = tmp_path / "bundle"
    result = hunkwise(
        "train-from-repo",
        str(repo.path),
        "--base",
        "tiny",
        "--out",
        str(out),
        "--tasks",
        "rnp",
        "--max-steps",
        "4",
        "--eval-limit",
        "4",
        "--progress",
        "json",
        env={**repo.env, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]  # nothing but JSON
    assert events, result.stderr[-2000:]
    for event in events[:-1]:
        assert set(event) == {"stage", "phase", "step", "total", "loss", "eta", "percent"}
    percents = [event["percent"] for event in events]
    assert percents == sorted(percents) and percents[-1] == 100 and percents[0] < 20
    phases = list(dict.fromkeys(event["phase"] for event in events[:-1]))
    assert phases == ["mine", "train", "evaluate"]
    stages = {event["stage"] for event in events}
    assert {"Mining history", "stage0", "rnp", "Evaluating rnp", "done"} <= stages
    training = [event for event in events if event["stage"] == "rnp" and event["phase"] == "train"]
    assert training[-1]["step"] == training[-1]["total"] == 4
    assert isinstance(training[-1]["loss"], float) and training[-1]["eta"] is not None
    done = events[-1]
    assert done["stage"] == "done" and done["bundle"] == str(out)
    assert "rnp" in done["metrics"] and (out / "manifest.json").is_file()
    assert "bundle ready" in result.stderr  # messages for a person: on stderr


def test_train_from_repo_refuses_json_twice(tmp_path: Path) -> None:
    result = hunkwise(
        "train-from-repo", str(tmp_path), "--base", "tiny", "--json", "--progress", "json"
    )
    assert result.returncode == 2 and "use one" in result.stderr


def test_json_progress_shares_out_the_percentage() -> None:
    stream = io.StringIO()
    sink = JsonProgress(stream, [("mine", 1.0), ("train", 3.0)], interval=0.0)
    with json_progress(sink):
        with progress_phase("mine"), progress_bar(None, "Mining history", 4) as advance:
            advance(2)
        with progress_phase("train"):
            expect_bars(2)
            for stage in ("rnp", "rcg"):
                with progress_bar(None, stage, 10) as advance:
                    advance(10, loss=0.5)
            with progress_bar(None, "unexpected", None) as advance:  # no total, beyond the two
                advance(3)
        sink.finish(bundle="b")
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    by = [(e["stage"], e.get("step"), e["percent"]) for e in events]
    assert by == [
        ("Mining history", 0, 0),
        ("Mining history", 2, 12),
        ("rnp", 0, 25),
        ("rnp", 10, 62),
        ("rcg", 0, 62),
        ("rcg", 10, 100),
        ("unexpected", 0, 100),
        ("unexpected", 3, 100),
        ("done", None, 100),
    ]
    assert events[3]["loss"] == 0.5 and events[2]["loss"] is None
    assert events[0]["eta"] is None and events[6]["total"] is None
