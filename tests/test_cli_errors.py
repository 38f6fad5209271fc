"""How every ``hunkwise`` command fails: one line on stderr and an exit status (2: bad usage
or input, 3: runtime failure), the output folders refused before any work, a damaged bundle
named as such, and ``--debug`` for the traceback. Through the real CLI in a subprocess,
except where a failure must be provoked on purpose (the wrapper around every command)."""

from __future__ import annotations

import errno
import shutil
import subprocess
import time

import click
import pytest
from click.testing import CliRunner

from tests.gitrepo import GitRepo
from tests.hunkwise_command import hunkwise
from training.cli import DEBUG_ENV, user_errors


def one_line_error(result: subprocess.CompletedProcess, status: int, *needles: str) -> None:
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hunkwise: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("errors") / "tool")
    repo.commit("Add the tool", tool_dot_py="def run():\n    return 1\n")
    repo.commit("Add a flag", tool_dot_py="def run(flag=False):\n    print(flag)\n    return 1\n")
    return repo


# A folder nothing can be created in even by root (/proc), and one under a regular file.
UNWRITABLE = ("/proc/hunkwise-test/out", "{file}/out")


@pytest.mark.parametrize("out", UNWRITABLE)
def test_output_folders_are_refused_before_any_work(repo, tmp_path, out) -> None:
    (tmp_path / "file").write_text("x")
    out = out.format(file=tmp_path / "file")
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text('[{"instruction": "Say hi", "input": "", "output": "hi"}]')
    for args, what in (
        (["mine", str(repo.path), "--out", out], "dataset directory"),
        (["import", "alpaca", str(alpaca), "--out", out], "dataset directory"),
        (["train-from-repo", str(repo.path), "--base", "tiny", "--out", out], "bundle directory"),
    ):
        result = hunkwise(*args)
        one_line_error(result, 2, "cannot write the " + what, out)


def test_train_from_repo_checks_the_base_before_mining(repo, tmp_path) -> None:
    out = tmp_path / "bundle"
    (tmp_path / "not-a-model").mkdir()
    for base, message in (
        (str(tmp_path / "missing"), "no such directory"),
        (str(tmp_path / "not-a-model"), "has no config.json"),
    ):
        started = time.monotonic()
        result = hunkwise("train-from-repo", str(repo.path), "--base", base, "--out", str(out))
        one_line_error(result, 2, message)
        # Nothing mined, nothing left behind.
        assert "mined" not in result.stdout + result.stderr
        assert sorted(path.name for path in tmp_path.iterdir()) == ["not-a-model"]
        assert time.monotonic() - started < 60


def test_eval_checks_where_it_writes_first(tmp_path, tiny_bundle) -> None:
    data = tmp_path / "data"
    data.mkdir()
    result = hunkwise(
        "eval", "--bundle", str(tiny_bundle), "--data", str(data), "--predictions", str(tmp_path)
    )
    assert result.returncode == 2 and "is a directory" in result.stderr
    result = hunkwise(
        "eval",
        "--bundle",
        str(tiny_bundle),
        "--data",
        str(data),
        "--predictions",
        "/proc/hunkwise-test/p.jsonl",
    )
    one_line_error(result, 2, "cannot write the folder of --predictions")


@pytest.mark.parametrize("damaged", ["rnp/adapter_model.safetensors", "base/model.safetensors"])
def test_a_damaged_bundle_is_one_line(repo, tmp_path, tiny_bundle, damaged) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    weights = bundle / damaged
    weights.write_bytes(weights.read_bytes()[:3000])
    result = hunkwise("review", "HEAD", "--repo", str(repo.path), "--bundle", str(bundle))
    one_line_error(result, 2, str(bundle / damaged.split("/")[0]) if "base" in damaged else "rnp")
    assert "damaged" in result.stderr or "cannot load base model" in result.stderr


def test_debug_adds_the_traceback(tmp_path) -> None:
    plain = hunkwise("mine", str(tmp_path), "--out", str(tmp_path / "o"))
    one_line_error(plain, 2, "not a git repository")
    debug = hunkwise("--debug", "mine", str(tmp_path), "--out", str(tmp_path / "o"))
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr and "HunkwiseError" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip()


# -- the wrapper every command runs in: failures nobody expected, provoked on purpose -------


def _failing(error: BaseException) -> click.Command:
    @click.command()
    @user_errors
    def command() -> None:
        raise error

    return command


@pytest.mark.parametrize(
    ("error", "status", "needle"),
    [
        (ValueError("a bug"), 3, "internal error: ValueError: a bug"),
        (PermissionError(errno.EACCES, "Permission denied", "/srv/x"), 2, "/srv/x: Permission"),
        (OSError(errno.ENOSPC, "No space left on device", "/srv/x"), 3, "No space left"),
        (MemoryError(), 3, "out of memory"),
    ],
)
def test_unexpected_failures_are_one_line_and_exit_3(monkeypatch, error, status, needle) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    result = CliRunner().invoke(_failing(error), [])
    assert result.exit_code == status
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert needle in result.output and "Traceback" not in result.output
    if status == 3 and isinstance(error, ValueError):
        assert "--debug" in result.output


def test_usage_errors_stay_clicks() -> None:
    result = CliRunner().invoke(_failing(click.UsageError("give one")), [])
    assert result.exit_code == 2 and "give one" in result.output
