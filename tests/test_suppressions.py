"""Suppressions that last: the ``hunkwise: ignore`` marker per comment syntax, the
per-repository dismissal store (round trip, a damaged file, two writing processes, never
inside the repository), the review rule the command line runs through the library, and
the language server dismissing over stdio (STAND-IN engine) and still dismissing after
a restart. Every test points XDG_CACHE_HOME at a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.lsp_harness import ROOT, STAND_IN_SERVER
from bench.lsp_harness.documents import open_document, replace
from bench.lsp_harness.stand_in_engine import StandInEngine, write_stand_in_bundle
from tests.gitrepo import GitRepo
from tests.lsp_session import execute, published, session, status, wait_until
from training.bundle import history_id
from training.errors import HunkwiseError
from training.review import (
    DISMISSED,
    SUPPRESSED,
    Skip,
    findings_for,
    hunks_for,
    hunks_from_patch,
)
from training.suppressions import (
    STORE_FORMAT,
    DismissalStore,
    check_hunk_id,
    ignore_marker,
    store_path,
)
from training.xdiff import diff_texts

APP = "".join(f"value_{n} = {n}\n" for n in range(1, 21))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _suppressed(path: str, old: str, new: str, new_lines: bool = True) -> bool:
    (hunk,) = diff_texts(old, new, path)
    return ignore_marker(hunk, new.split("\n") if new_lines else ())


def _repo(path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.commit("Add app", app_dot_py=APP)
    return repo


def _untouched(repo: GitRepo) -> None:
    """Nothing hunkwise wrote is in the work tree or the index (ignored files included)."""
    assert repo.git("status", "--porcelain", "--ignored", "--untracked-files=all") == ""


# -- the marker --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "added", "suppressed"),
    [
        # Python: "#" comments; a marker in a string is no comment.
        ("app.py", "y = eval(s)  # hunkwise: ignore\n", True),
        ("app.py", "y = eval(s)  # HunkWise:Ignore\n", True),
        ("app.py", "y = eval(s)  # hunkwise: ignore[review-needed]\n", True),
        ("app.py", "y = eval(s)  # hunkwise: ignore[some-other-rule]\n", False),
        ("app.py", "y = eval('# hunkwise: ignore')\n", False),
        ("app.py", 'y = """a"""  # hunkwise: ignore\n', True),
        ("app.py", 'y = "a # b"  # not a marker: hunkwise ignores nothing here\n', False),
        ("app.py", "y = 1  // hunkwise: ignore\n", False),
        # JavaScript (C-style): "//" and "/* */", strings in ', " and `.
        ("app.js", "let y = eval(s); // hunkwise: ignore\n", True),
        ("app.js", "/* hunkwise: ignore */ let y = eval(s);\n", True),
        ("app.js", "let y = 1; /* why */ eval(s); // hunkwise: ignore\n", True),
        ("app.js", "let y = `// hunkwise: ignore`;\n", False),
        ("app.js", "let y = eval(s); # hunkwise: ignore\n", False),
        # SQL: "--" comments, '...' strings.
        ("schema.sql", "DROP TABLE users; -- hunkwise: ignore\n", True),
        ("schema.sql", "SELECT '-- hunkwise: ignore';\n", False),
        # HTML: "<!-- -->"; an apostrophe in text opens no string.
        ("page.html", "<p>Don't</p> <!-- hunkwise: ignore -->\n", True),
        ("page.html", "<p>hunkwise: ignore</p>\n", False),
        # Unknown kind: "#", "//" and "/* */".
        ("run.unknown", "launch # hunkwise: ignore\n", True),
        ("run.unknown", "launch // hunkwise: ignore\n", True),
        ("run.unknown", "launch -- hunkwise: ignore\n", False),
        # No comments at all.
        ("data.json", '"a": 1 // hunkwise: ignore\n', False),
    ],
)
def test_the_marker_on_the_first_added_line(path: str, added: str, suppressed: bool) -> None:
    old = "first = 1\n"
    assert _suppressed(path, old, old + added) is suppressed


def test_the_marker_on_the_line_above() -> None:
    old = "a = 1\n# hunkwise: ignore\nb = 2\nc = 3\n"
    assert _suppressed("app.py", old, old.replace("b = 2", "b = eval(s)"))
    # A comment-only line above, added with the change: it is the first added line.
    assert _suppressed("app.py", "a = 1\n", "a = 1\n# hunkwise: ignore\nb = eval(s)\n")
    # Two lines above counts for nothing; nor does a marker in a deleted line.
    old = "# hunkwise: ignore\na = 1\nb = 2\n"
    assert not _suppressed("app.py", old, old.replace("b = 2", "b = eval(s)"))
    old = "a = 1\n# hunkwise: ignore\nb = 2\n"
    assert not _suppressed("app.py", old, "a = 1\nb = eval(s)\n")
    # Inside a block comment, and a pure deletion under a marker.
    old = "run();\n/* A shim for old browsers.\n * hunkwise: ignore */\n"
    assert _suppressed("app.c", old, old + "again();\n")
    old = "a = 1\n# hunkwise: ignore\nb = 2\nc = 3\n"
    assert _suppressed("app.py", old, old.replace("b = 2\n", ""))


def test_a_hunk_without_context_reads_the_line_above_from_the_file() -> None:
    old = "# hunkwise: ignore\nx = 1\n"
    new = "# hunkwise: ignore\nx = 2\n"
    (hunk,) = diff_texts(old, new, "app.py", context=0)
    assert hunk.lines == ("-x = 1", "+x = 2")
    assert not ignore_marker(hunk)  # the line above is not known
    assert ignore_marker(hunk, new.split("\n"))


# -- the store ---------------------------------------------------------------------------


def test_the_store_round_trip_and_its_location(tmp_path: Path, cache: Path) -> None:
    repo = _repo(tmp_path / "repo")
    store = DismissalStore.for_repo(repo.path)
    root_commit = history_id(repo.path)
    assert store.path == cache / "hunkwise" / "dismissed" / f"{root_commit[:12]}.json"
    assert store.read() == {} and store.problem is None
    assert store.dismiss("0123456789abcdef", "app.py", by="ana", reason="reviewed by hand")
    assert store.dismiss("fedcba9876543210")
    assert not store.dismiss("0123456789ABCDEF")  # already there: kept as it was
    (entry, other) = sorted(DismissalStore.for_repo(repo.path).read().values(), key=str)
    assert (entry.hunk_id, entry.path, entry.by, entry.reason) == (
        "0123456789abcdef",
        "app.py",
        "ana",
        "reviewed by hand",
    )
    assert entry.time.endswith("Z") and (other.path, other.by) == (None, None)
    document = json.loads(store.path.read_text(encoding="utf-8"))
    assert document["format"] == STORE_FORMAT
    assert set(document["dismissed"]) == {"0123456789abcdef", "fedcba9876543210"}
    assert store.undismiss("fedcba9876543210") and not store.undismiss("fedcba9876543210")
    assert store.ids() == {"0123456789abcdef"}
    # A clone of the same history shares the store; nothing is written into either.
    clone = GitRepo(tmp_path / "clone")
    clone.git("pull", "-q", str(repo.path), "main")
    assert store_path(clone.path) == store.path
    _untouched(repo)
    _untouched(clone)
    # A repository without commits has a store of its own, by its path.
    empty = GitRepo(tmp_path / "empty")
    assert store_path(empty.path).parent == store.path.parent
    assert store_path(empty.path).name.startswith("empty-")


def test_a_damaged_store_is_a_warning_and_kept_aside(tmp_path: Path) -> None:
    store = DismissalStore(tmp_path / "dismissed.json")
    store.path.write_text("{not json", encoding="utf-8")
    assert store.ids() == frozenset()
    assert store.problem is not None and "\n" not in store.problem
    assert str(store.path) in store.problem and "none are applied" in store.problem
    store.path.write_text(json.dumps({"format": "something/9", "dismissed": {}}))
    assert store.read() == {} and "is not a hunkwise-dismissed/1 file" in store.problem
    # Entries that do not fit are left out; the others are read.
    good = {"path": "a.py", "time": "2025-01-01T00:00:00Z"}
    entries = {"0123456789abcdef": good, "not-an-id": good, "fedcba9876543210": [1]}
    store.path.write_text(json.dumps({"format": STORE_FORMAT, "dismissed": entries}))
    assert store.ids() == {"0123456789abcdef"} and store.problem is None
    # The next write sets a damaged file aside instead of losing it.
    store.path.write_bytes(b"\xff\xfe garbage")
    assert store.dismiss("1111111111111111", "b.py")
    assert store.path.with_name("dismissed.json.corrupt").read_bytes() == b"\xff\xfe garbage"
    assert store.ids() == {"1111111111111111"} and store.problem is None


def test_a_store_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    store = DismissalStore(tmp_path / "cache" / "hunkwise" / "dismissed" / "x.json")
    assert store.ids() == frozenset()
    with pytest.raises(HunkwiseError, match=r"cannot write the dismissals in .*writable"):
        store.dismiss("0123456789abcdef")
    with pytest.raises(HunkwiseError, match="is not a hunk id"):
        check_hunk_id("HEAD")


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    store = tmp_path / "dismissed.json"
    writer = (
        "import sys\n"
        "from training.suppressions import DismissalStore\n"
        "store = DismissalStore(sys.argv[1])\n"
        "for n in range(100):\n"
        "    store.dismiss(f'{int(sys.argv[2]):08x}{n:08x}', f'file{n}.py')\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", writer, str(store), str(k)], cwd=ROOT)
        for k in (1, 2)
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    ids = DismissalStore(store).ids()
    assert len(ids) == 200 and f"{2:08x}{99:08x}" in ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dismissed.json", "dismissed.json.lock"]


# -- the review rule, as the command line runs it -----------------------------------------


def test_review_skips_suppressed_and_dismissed_hunks(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    lines = APP.splitlines(keepends=True)
    lines[1] += "print(1)  # hunkwise: ignore\n"
    lines[9] += "print(2)\n"
    lines[17] += "print(3)\n"
    repo.write("app.py", "".join(lines))
    selection = hunks_for(repo.path)
    (marked,) = [skip for skip in selection.skipped if skip.reason == SUPPRESSED]
    assert marked.hunk is not None and marked.hunk.added == [(3, "print(1)  # hunkwise: ignore")]
    assert marked.description == "suppressed by a `hunkwise: ignore` comment"
    second, third = selection.hunks
    store = DismissalStore.for_repo(repo.path)
    store.dismiss(second.id, second.path)

    dismissed = selection.dismissing(store.ids())
    assert dismissed.hunks == [third]
    assert Skip("app.py", DISMISSED, second) in dismissed.skipped
    assert dismissed.counts() == {SUPPRESSED: 1, DISMISSED: 1}
    engine = StandInEngine(tmp_path / "stand-in", max_new_tokens=8, delay=0.0)
    findings = findings_for(engine, dismissed.hunks, engine.score(dismissed.hunks))
    assert [finding.hunk_id for finding in findings] == [third.id]
    # --show-dismissed: the dismissed hunk is reviewed again (the marker still applies).
    assert len(findings_for(engine, selection.hunks, engine.score(selection.hunks))) == 2
    _untouched_but(repo, "app.py")


def _untouched_but(repo: GitRepo, path: str) -> None:
    assert repo.git("status", "--porcelain", "--ignored", "--untracked-files=all") == f" M {path}\n"


def test_a_patch_uses_its_context_lines_for_the_marker(tmp_path: Path) -> None:
    patch = (
        "--- a/app.py\n+++ b/app.py\n@@ -1,3 +1,3 @@\n"
        " first = 1\n # hunkwise: ignore\n-x = 1\n+x = eval(s)\n"
    )
    assert hunks_from_patch(patch).counts() == {SUPPRESSED: 1}
    # Without context lines, the line above comes from the file's first lines.
    bare = "--- a/app.py\n+++ b/app.py\n@@ -3 +3 @@\n-x = 1\n+x = eval(s)\n"
    assert hunks_from_patch(bare).counts() == {}
    (tmp_path / "app.py").write_text("first = 1\n# hunkwise: ignore\nx = eval(s)\n")
    assert hunks_from_patch(bare, tmp_path).counts() == {SUPPRESSED: 1}


# -- the language server -----------------------------------------------------------------


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CACHE_HOME": str(cache)}


def _two_prints(first: str = "print(1)", second: str = "print(2)") -> str:
    lines = APP.splitlines(keepends=True)
    lines[1] += first + "\n"
    lines[16] += second + "\n"
    return "".join(lines)


@pytest.mark.asyncio
async def test_a_dismissal_outlasts_the_server(tmp_path: Path, cache: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    options = {"bundle": str(bundle), "debounceMs": 10}
    uri = (repo.path / "app.py").as_uri()
    text = _two_prints()
    async with session(repo.path, options, STAND_IN_SERVER, env=_env(cache)) as client:
        open_document(client, uri, text)
        first, second = (await published(client, uri, 1)).diagnostics
        since = len(client.published)
        result = await execute(client, "hunkwise.dismiss", {"uri": uri, "hunk": first.data["hunk"]})
        assert result == {"dismissed": True}
        (left,) = (
            await published(client, uri, 1, since, lambda p: len(p.diagnostics) == 1)
        ).diagnostics
        assert left.data["hunk"] == second.data["hunk"]
        store = DismissalStore.for_repo(repo.path)
        await wait_until(lambda: first.data["hunk"] in store.ids(), "the stored dismissal")
        assert store.read()[first.data["hunk"]].path == "app.py"

    # A new server: the finding stays dismissed, and the store is what `hunkwise review` reads.
    async with session(repo.path, options, STAND_IN_SERVER, env=_env(cache)) as client:
        open_document(client, uri, text)
        (only,) = (await published(client, uri, 1)).diagnostics
        assert only.data["hunk"] == second.data["hunk"]
        # A dismissal written meanwhile by the command line counts at the next review.
        store.dismiss(second.data["hunk"], "app.py")
        replace(client, uri, 2, text, 0, 0, "")  # an empty change: reviewed again
        await published(client, uri, 2, check=lambda p: p.diagnostics == [])
        assert (await status(client))["state"] == "ready"
    _untouched(repo)


@pytest.mark.asyncio
async def test_the_server_does_not_flag_a_hunk_marked_ignore(tmp_path: Path, cache: Path) -> None:
    repo = _repo(tmp_path / "repo")
    bundle = write_stand_in_bundle(tmp_path / "bundle")
    options = {"bundle": str(bundle), "debounceMs": 10}
    uri = (repo.path / "app.py").as_uri()
    repo.write("app.py", _two_prints("print(1)  # hunkwise: ignore"))
    async with session(repo.path, options, STAND_IN_SERVER, env=_env(cache)) as client:
        answer = await execute(client, "hunkwise.reviewWorkspace")
        assert (answer["files"], answer["flagged"]) == (1, 1)
        assert answer["skipped"] == {SUPPRESSED: 1}
        (flagged,) = (await published(client, uri, None)).diagnostics
        assert flagged.range.start.line == 18  # print(2): print(1) on line 3 is suppressed
        # In an open buffer: a comment line added above print(2) suppresses its hunk.
        text = _two_prints("print(1)", "# hunkwise: ignore\nprint(2)")
        open_document(client, uri, text)
        (flagged,) = (await published(client, uri, 1)).diagnostics
        assert flagged.range.start.line == 2
    _untouched_but(repo, "app.py")
