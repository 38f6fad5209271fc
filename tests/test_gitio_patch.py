"""training.gitio.patch against real git: ``parse_diff_files`` on ``git diff`` output of temp
repos (renames, quoted names, names holding " b/", mnemonic prefixes, CRLF), on ``diff -u``
output, and on patches that do not parse."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.gitdiff import git, hunk_part, isolated_env
from training.gitio.patch import DiffParseError, parse_diff_files
from training.hunks import Hunk
from training.xdiff import diff_texts


@pytest.fixture(scope="module")
def git_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return isolated_env(tmp_path_factory.mktemp("home"))


def hunks_of(diff: str) -> list[Hunk]:
    """Every hunk of a diff, in order."""
    return [hunk for file in parse_diff_files(diff) for hunk in file.hunks]


FUNCTIONS = "".join(f"def f{i}():\n    return {i}\n\n" for i in range(20))


@pytest.fixture(scope="module")
def repo_diff(git_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo whose staged change has a rename with edits, a new, a deleted, a binary, a
    CRLF and a no-final-newline file, and names git must quote."""
    repo = tmp_path_factory.mktemp("repo")
    git(git_env, repo, "init", "-q", ".")
    files = {
        "moved.py": FUNCTIONS.encode(),
        "gone.txt": b"a\nb\nc\n",
        "image.bin": b"\0\1\2abc",
        "crlf.txt": b"one\r\ntwo\r\nthree\r\n",
        "nonl.txt": b"x\ny",
        'we ird "q".py': b"a = 1\n",
        "caf\u00e9.py": b"b = 1\n",
    }
    for name, data in files.items():
        (repo / name).write_bytes(data)
    git(git_env, repo, "add", "-A")
    git(git_env, repo, "commit", "-q", "-m", "init")
    (repo / "moved.py").unlink()
    (repo / "renamed.py").write_text(FUNCTIONS.replace("return 7\n", "return 70\n"))
    (repo / "gone.txt").unlink()
    (repo / "new.txt").write_bytes(b"fresh\nfile")
    (repo / "image.bin").write_bytes(b"\0\1\2abcd")
    (repo / "crlf.txt").write_bytes(b"one\r\nTWO\r\nthree\r\n")
    (repo / "nonl.txt").write_bytes(b"x\nz")
    (repo / 'we ird "q".py').write_bytes(b"a = 2\n")
    (repo / "caf\u00e9.py").write_bytes(b"b = 2\n")
    git(git_env, repo, "add", "-A")
    return repo


@pytest.mark.parametrize("quotepath", ["false", "true"])
def test_parse_diff_files_reproduces_git_hunks(
    git_env: dict[str, str], repo_diff: Path, quotepath: str
) -> None:
    out = git(git_env, repo_diff, "-c", f"core.quotepath={quotepath}", "diff", "--cached", "-M")
    hunks = hunks_of(out)

    assert "\n".join(h.text for h in hunks) == hunk_part(out)
    assert [(h.path, h.old_path) for h in hunks] == [
        ("caf\u00e9.py", None),
        ("crlf.txt", None),
        ("gone.txt", None),
        ("new.txt", None),
        ("nonl.txt", None),
        ("renamed.py", "moved.py"),
        ('we ird "q".py', None),
    ]
    by_path = {h.path: h for h in hunks}
    assert by_path["crlf.txt"].lines == (" one\r", "-two\r", "+TWO\r", " three\r")
    assert by_path["nonl.txt"].lines == (
        " x",
        "-y",
        "\\ No newline at end of file",
        "+z",
        "\\ No newline at end of file",
    )
    assert (by_path["new.txt"].old_start, by_path["new.txt"].old_len) == (0, 0)
    assert (by_path["gone.txt"].new_start, by_path["gone.txt"].new_len) == (0, 0)
    assert by_path["renamed.py"].header == "def f6():"
    assert by_path["renamed.py"].deleted == [(23, "    return 7")]
    assert by_path["renamed.py"].added == [(23, "    return 70")]


def test_git_diff_of_a_repo_matches_diff_texts(git_env: dict[str, str], repo_diff: Path) -> None:
    """The two halves agree: what git prints for a real file equals diff_texts of its blobs."""
    out = git(git_env, repo_diff, "diff", "--cached", "-M", "--", "renamed.py", "moved.py")
    old = git(git_env, repo_diff, "show", "HEAD:moved.py")
    new = (repo_diff / "renamed.py").read_text()
    assert hunks_of(out) == diff_texts(old, new, "renamed.py", old_path="moved.py")


@pytest.fixture(scope="module")
def b_slash_repo(git_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A staged change to files whose names hold " b/" (the split unidiff gets wrong): an
    edit, an addition (non-ASCII: octal escapes when git quotes), a deletion, a rename with
    an edit, a pure rename, a mode change, a binary file, and a name git always quotes."""
    repo = tmp_path_factory.mktemp("b-slash")
    git(git_env, repo, "init", "-q", ".")
    files = {
        "dir b/x y.py": b"a = 1\n",
        "old b/gone.py": b"g = 1\n",
        "a b/from.py": FUNCTIONS.encode(),
        "p b/same.py": b"s = 1\n",
        "m b/run.sh": b"echo\n",
        "img b/x.bin": b"\0\1",
        'q b/"x".py': b"q = 1\n",
    }
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    git(git_env, repo, "add", "-A")
    git(git_env, repo, "commit", "-q", "-m", "init")
    (repo / "dir b/x y.py").write_bytes(b"a = 2\n")
    (repo / "new b").mkdir()
    (repo / "new b/caf\u00e9 b.py").write_bytes(b"n = 1\n")
    (repo / "old b/gone.py").unlink()
    (repo / "a b/from.py").rename(repo / "dir b/to b.py")
    (repo / "dir b/to b.py").write_text(FUNCTIONS.replace("return 7\n", "return 70\n"))
    (repo / "p b/same.py").rename(repo / "p b/moved b.py")
    (repo / "m b/run.sh").chmod(0o755)
    (repo / "img b/x.bin").write_bytes(b"\0\2")
    (repo / 'q b/"x".py').write_bytes(b"q = 2\n")
    git(git_env, repo, "add", "-A")
    return repo


@pytest.mark.parametrize(
    "config", ["core.quotepath=false", "core.quotepath=true", "diff.mnemonicPrefix=true"]
)
def test_parse_diff_files_reads_names_holding_b_slash(
    git_env: dict[str, str], b_slash_repo: Path, config: str
) -> None:
    out = git(git_env, b_slash_repo, "-c", config, "diff", "--cached", "-M")
    if config == "core.quotepath=false":
        assert "diff --git a/dir b/x y.py b/dir b/x y.py\n" in out  # the unquoted form
    elif config == "core.quotepath=true":
        assert '"b/new b/caf\\303\\251 b.py"' in out  # the quoted form, octal escapes
    else:
        assert "diff --git c/dir b/x y.py i/dir b/x y.py\n" in out  # (c)ommit, (i)ndex
    assert "\n".join(h.text for h in hunks_of(out)) == hunk_part(out)
    files = {f.path: f for f in parse_diff_files(out)}
    assert {(f.path, f.old_path, f.status, f.binary) for f in files.values()} == {
        ("dir b/to b.py", "a b/from.py", "R", False),
        ("dir b/x y.py", None, "M", False),
        ("img b/x.bin", None, "M", True),
        ("m b/run.sh", None, "M", False),
        ("new b/caf\u00e9 b.py", None, "A", False),
        ("old b/gone.py", None, "D", False),
        ("p b/moved b.py", "p b/same.py", "R", False),
        ('q b/"x".py', None, "M", False),
    }
    assert files["new b/caf\u00e9 b.py"].hunks[0].added == [(1, "n = 1")]
    assert files["old b/gone.py"].hunks[0].deleted == [(1, "g = 1")]
    assert files["dir b/to b.py"].hunks[0].added == [(23, "    return 70")]
    assert files["dir b/to b.py"].hunks[0].old_path == "a b/from.py"
    assert files["m b/run.sh"].hunks == files["p b/moved b.py"].hunks == ()


def test_parse_diff_files_of_a_patch_saved_with_crlf(
    git_env: dict[str, str], repo_diff: Path
) -> None:
    out = git(git_env, repo_diff, "diff", "--cached", "-M")
    windows = out.replace("\n", "\r\n")
    assert parse_diff_files(windows) == parse_diff_files(out)
    # the diff of a file with CRLF line ends keeps its CRs, in either patch
    (crlf,) = [h for h in hunks_of(windows) if h.path == "crlf.txt"]
    assert crlf.lines == (" one\r", "-two\r", "+TWO\r", " three\r")


def test_parse_diff_files_of_diff_u_output(tmp_path: Path) -> None:
    """GNU diff's unified output: no git headers, a date after each name, no a/ b/."""
    (tmp_path / "dir b").mkdir()
    (tmp_path / "dir b/old.py").write_text(FUNCTIONS)
    (tmp_path / "dir b/new.py").write_text(FUNCTIONS.replace("return 3\n", "return 30\n"))
    done = subprocess.run(
        ["diff", "-u", "dir b/old.py", "dir b/new.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    # diffutils 3.4 and later quote a name with a space; older ones do not
    assert done.stdout.split("\t")[0] in ("--- dir b/old.py", '--- "dir b/old.py"')
    (file,) = parse_diff_files(done.stdout)
    assert (file.path, file.old_path, file.status) == ("dir b/new.py", "dir b/old.py", "R")
    (hunk,) = file.hunks
    assert hunk.text == hunk_part(done.stdout)
    assert (hunk.deleted, hunk.added) == ([(11, "    return 3")], [(11, "    return 30")])


def test_parse_diff_files_names_the_line_a_broken_patch_stops_at() -> None:
    head = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n"
    with pytest.raises(DiffParseError, match="line 4: the patch ends inside this hunk"):
        parse_diff_files(head + "@@ -1,3 +1,3 @@\n a\n-b\n")
    with pytest.raises(DiffParseError) as error:
        parse_diff_files(head + "@@ -1,2 +1,2 @@\n a\n?b\n+c\n")
    assert error.value.line == 6 and "'?b'" in error.value.reason
    with pytest.raises(DiffParseError, match="line 6: hunk is longer than expected: '-b'"):
        parse_diff_files(head + "@@ -1 +1 @@\n-a\n-b\n+c\n")
    assert parse_diff_files("") == []
