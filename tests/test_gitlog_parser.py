"""The ``git log -p`` reader against any bytes git can print: NUL bytes in a file git
calls text, invalid UTF-8, lone CRs, a stream cut short, and random bytes spliced into
real output. Only the damaged file may change; the walk never raises."""

from __future__ import annotations

import io
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gitrepo import GitRepo
from training.gitio import log as gitlog
from training.gitio.command import open_repository
from training.gitio.log import FileDiff, stream_commits
from training.mining.miner import MineOptions, mine_repository

# git calls a file binary only for a NUL in its first 8,000 bytes.
NUL_LATE = b"x" * 9000 + b"\n\x00abc\n"


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("bytes") / "repo")
    repo.commit("Add the files", a_dot_py="def f():\n    return 1\n", logo_dot_ai=NUL_LATE)
    repo.commit(
        "Change the files",
        a_dot_py="def f():\n    return 2\n",
        logo_dot_ai=NUL_LATE.replace(b"abc", b"abd"),
        crlf_dot_txt=b"one\r\ntwo\rthree\r\n",
        latin_dot_txt="caf\xe9\n".encode("latin-1"),
        z_dot_py="X = 1\n",
    )
    repo.commit("Fix f", a_dot_py="def f():\n    return 3\n")
    return repo


def raw_log(repo: GitRepo) -> bytes:
    args = gitlog._log_args("--topo-order", "--reverse", "HEAD", "--")
    return subprocess.run(
        ["git", *args], cwd=repo.path, env=repo.env, capture_output=True, check=True
    ).stdout


def parse(data: bytes) -> list[gitlog.Commit]:
    return list(gitlog._parse(io.BytesIO(data)))


def summary(file: FileDiff) -> tuple:
    return (file.path, file.old_path, file.status, file.binary, file.malformed, file.hunks)


def test_a_late_nul_marks_only_that_file_binary(history):
    commits = list(stream_commits(open_repository(history.path)))
    assert [c.message for c in commits] == ["Add the files", "Change the files", "Fix f"]
    changed = {f.path: f for f in commits[1].files}
    assert changed["logo.ai"].binary and not changed["logo.ai"].hunks
    assert [line for line in changed["a.py"].hunks[0].lines if line[0] in "+-"] == [
        "-    return 1",
        "+    return 2",
    ]
    assert changed["crlf.txt"].hunks[0].lines == ("+one\r", "+two\rthree\r")
    assert changed["latin.txt"].undecodable
    assert not changed["z.py"].malformed and changed["z.py"].hunks


def test_mine_survives_a_late_nul_and_counts_the_file(history, tmp_path):
    stats = mine_repository(history.path, tmp_path / "out", MineOptions(horizon_commits=1))
    assert stats["skipped"]["binary"] == 2  # logo.ai, added then changed
    assert stats["records"]["cr"] == 1  # a.py in the fix commit
    assert stats["fix_commits"] == 1


@pytest.mark.parametrize("tail", [b"", b"+    ret"], ids=["between-lines", "mid-line"])
def test_a_stream_cut_short_marks_the_last_file_malformed(history, tail):
    data = raw_log(history)
    cut = data[: data.rindex(b"+    return 3")] + tail
    *_, last = parse(cut)
    assert last.message == "Fix f"
    [file] = last.files
    assert file.malformed and not file.hunks
    assert [summary(f) for f in parse(data)[1].files] == [summary(f) for f in parse(cut)[1].files]


def test_hunk_lines_that_disagree_with_the_header_are_malformed():
    diff = (
        b"diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n@@ -1,3 +1,2 @@\n a\n-b\n+c\n"
        b"diff --git a/y.py b/y.py\n--- a/y.py\n+++ b/y.py\n@@ -1 +1 @@\n-old\n+new\nstray\n"
        b'diff --git "a/unbalanced b/x\n'
    )
    x, y, bad = gitlog.parse_git_diff(diff)
    assert x.malformed and not x.hunks
    assert y.malformed and not y.hunks
    assert bad.malformed


def file_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every file's diff in a log, each ending where the next file or
    commit header begins."""
    starts = [m.start() for m in gitlog._FILE_START.finditer(data)]
    stops = sorted({*starts[1:], *(m.start() for m in gitlog._COMMIT_HEADER.finditer(data))})
    return [(start, min((s for s in stops if s > start), default=len(data))) for start in starts]


NASTY = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(
            [b"\x00", b"\r", b"\n", b"\xff\xfe", b"\n@@ -1 +1 @@\n", b"\n+", b"\n-", b'"', b"\\"]
        ),
    ),
    max_size=8,
).map(b"".join)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), junk=NASTY)
def test_random_bytes_in_one_file_never_raise_nor_touch_the_others(history, data, junk):
    log = raw_log_cached(history)
    spans = file_spans(log)
    target = data.draw(st.integers(0, len(spans) - 1))
    start, end = spans[target]
    # After the "diff --git" line, so the file itself still starts where it did.
    first_break = log.index(b"\n", start) + 1
    where = data.draw(st.integers(first_break, end - 1))  # inside the file's last line
    damaged = log[:where] + junk + log[where:]
    before = [(c.sha, [summary(f) for f in c.files]) for c in parse(log)]
    after = [(c.sha, [summary(f) for f in c.files]) for c in parse(damaged)]
    assert [sha for sha, _ in after] == [sha for sha, _ in before]
    untouched = [f for sha, files in before for f in files]
    kept = [f for sha, files in after for f in files]
    # The damaged file may change, or split in two where junk holds "\ndiff --git";
    # every other file reads exactly as before, in order.
    damaged_index = target
    assert kept[:damaged_index] == untouched[:damaged_index]
    assert (
        kept[len(kept) - (len(untouched) - damaged_index - 1) :] == untouched[damaged_index + 1 :]
    )


_LOGS: dict[str, bytes] = {}


def raw_log_cached(repo: GitRepo) -> bytes:
    key = str(repo.path)
    if key not in _LOGS:
        _LOGS[key] = raw_log(repo)
    return _LOGS[key]
