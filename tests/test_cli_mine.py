"""``hunkwise mine`` as a user runs it: exit codes, one-line errors, JSON, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.gitrepo import GitRepo
from tests.hunkwise_command import hunkwise

HEAVY = ("torch", "transformers", "peft", "datasets", "accelerate")


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("cli") / "tool")
    repo.commit("Add the tool", tool_dot_py="def run():\n    return 1\n")
    repo.commit("Add a flag", tool_dot_py="def run(flag=False):\n    return 1\n")
    repo.commit(
        "Fix the flag being ignored",
        tool_dot_py="def run(flag=False):\n    return 2 if flag else 1\n",
    )
    repo.commit("Add docs", README_dot_md="# tool\n")
    return repo


def test_mine_json_output_and_files(small_repo, tmp_path):
    result = hunkwise(
        "mine",
        str(small_repo.path),
        "--out",
        str(tmp_path / "data"),
        "--json",
        "--horizon-commits",
        "1",
    )
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["commits"] == 4 and stats["fix_commits"] == 1
    assert json.loads((tmp_path / "data" / "stats.json").read_text()) == stats
    for task in ("rnp", "rcg", "cr", "edit"):
        for split in ("train", "valid", "test"):
            assert (tmp_path / "data" / task / f"{split}.jsonl").exists()


def test_mine_prints_a_summary_table(small_repo, tmp_path):
    result = hunkwise("mine", "--out", str(tmp_path / "data"), cwd=small_repo.path)
    assert result.returncode == 0, result.stderr
    assert "hunkwise mine: tool" in result.stdout and "rnp" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mine", "{tmp}", "--out", "{tmp}/o"], "not a git repository"),
        (["mine", "{tmp}/missing", "--out", "{tmp}/o"], "no such directory"),
        (["mine", "{repo}", "--out", "{tmp}/o", "--rev", "nope"], "'nope' is not a commit"),
        (
            ["mine", "{repo}", "--out", "{tmp}/o", "--horizon-commits", "3", "--horizon-days", "2"],
            "not both",
        ),
        (["mine", "{repo}", "--out", "{tmp}/o", "--max-commits", "0"], "--max-commits"),
    ],
)
def test_bad_input_exits_2_with_one_line(small_repo, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, repo=small_repo.path) for a in args]
    result = hunkwise(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_and_mine_do_not_import_heavy_libraries(small_repo, tmp_path):
    code = (
        "import sys\n"
        "from training.cli import main\n"
        "try:\n"
        f"    main(sys.argv[1:])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    for args in (["--help"], ["mine", str(small_repo.path), "--out", str(tmp_path / "o")]):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr


def test_mine_without_out_writes_beside_the_default_bundle(small_repo, tmp_path):
    import os

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", "from training.cli import main; main()", "mine", "--json"],
        cwd=small_repo.path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    [data] = (tmp_path / "cache" / "hunkwise").glob(".*.data")
    assert json.loads((data / "stats.json").read_text()) == json.loads(result.stdout)
    assert not (small_repo.path / "rnp").exists()
