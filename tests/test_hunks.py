"""training.hunks against real git: ``parse_diff`` on ``git diff`` output of temp repos, and
``diff_texts`` against ``git diff --no-index`` on hundreds of generated edit pairs."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.hunks import (
    DiffParseError,
    Hunk,
    diff_texts,
    language_of,
    parse_diff,
    parse_diff_files,
)

Pair = tuple[str, str]


@pytest.fixture(scope="module")
def git_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment in which no user or system config (diff.algorithm, diff.context,
    diff drivers, attributes) can change what git prints."""
    home = tmp_path_factory.mktemp("home")
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.pop("GIT_DIFF_OPTS", None)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    return env


def git(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run git; its output decoded the way hunkwise reads git (undecodable bytes kept)."""
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=False)
    # `git diff --no-index` exits 1 when the files differ
    assert done.returncode in (0, 1), done.stderr.decode()
    return done.stdout.decode("utf-8", "surrogateescape")


def hunk_part(diff: str) -> str:
    """The hunks of git's output: every line from an "@@" line up to the next file header."""
    kept, in_hunk = [], False
    for line in diff.split("\n"):
        if line.startswith("diff --git "):
            in_hunk = False
        elif line.startswith("@@ "):
            in_hunk = True
        if in_hunk and line:
            kept.append(line)
    return "\n".join(kept)


def git_no_index(env: dict[str, str], pairs: list[Pair], context: int) -> list[list[Hunk]]:
    """What `git diff --no-index -U<context>` prints for each pair, as hunks. All pairs go
    through one git call: files A/<n>.txt and B/<n>.txt."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for side, index in (("A", 0), ("B", 1)):
            (root / side).mkdir()
            for n, pair in enumerate(pairs):
                (root / side / f"{n:04d}.txt").write_bytes(
                    pair[index].encode("utf-8", "surrogateescape")
                )
        out = git(
            env,
            root,
            *("-c", "core.quotepath=false", "diff", "--no-index", "--no-color"),
            *("--no-ext-diff", f"-U{context}", "A", "B"),
        )
    by_pair: list[list[Hunk]] = [[] for _ in pairs]
    for hunk in parse_diff(out):
        n = int(Path(hunk.path).stem)
        by_pair[n].append(dataclasses.replace(hunk, path="f.txt", old_path=None))
    return by_pair


def assert_same_as_git(env: dict[str, str], pairs: list[Pair], context: int) -> None:
    expected = git_no_index(env, pairs, context)
    wrong = [
        (n, got, want)
        for n, want in enumerate(expected)
        if (got := diff_texts(pairs[n][0], pairs[n][1], "f.txt", context=context)) != want
    ]
    if wrong:
        n, got, want = wrong[0]
        pytest.fail(
            f"{len(wrong)} of {len(pairs)} pairs differ from git -U{context}; first: pair {n}\n"
            f"old={pairs[n][0]!r}\nnew={pairs[n][1]!r}\n"
            f"--- git:\n{chr(10).join(h.text for h in want)}\n"
            f"--- diff_texts:\n{chr(10).join(h.text for h in got)}"
        )


# --- parse_diff on real `git diff` output ------------------------------------------------------

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
def test_parse_diff_reproduces_git_hunks(
    git_env: dict[str, str], repo_diff: Path, quotepath: str
) -> None:
    out = git(git_env, repo_diff, "-c", f"core.quotepath={quotepath}", "diff", "--cached", "-M")
    hunks = parse_diff(out)

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
    assert parse_diff(out) == diff_texts(old, new, "renamed.py", old_path="moved.py")


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
def test_parse_diff_reads_names_holding_b_slash(
    git_env: dict[str, str], b_slash_repo: Path, config: str
) -> None:
    out = git(git_env, b_slash_repo, "-c", config, "diff", "--cached", "-M")
    if config == "core.quotepath=false":
        assert "diff --git a/dir b/x y.py b/dir b/x y.py\n" in out  # the unquoted form
    elif config == "core.quotepath=true":
        assert '"b/new b/caf\\303\\251 b.py"' in out  # the quoted form, octal escapes
    else:
        assert "diff --git c/dir b/x y.py i/dir b/x y.py\n" in out  # (c)ommit, (i)ndex
    assert "\n".join(h.text for h in parse_diff(out)) == hunk_part(out)
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


def test_parse_diff_of_a_patch_saved_with_crlf(git_env: dict[str, str], repo_diff: Path) -> None:
    out = git(git_env, repo_diff, "diff", "--cached", "-M")
    windows = out.replace("\n", "\r\n")
    assert parse_diff_files(windows) == parse_diff_files(out)
    # the diff of a file with CRLF line ends keeps its CRs, in either patch
    (crlf,) = [h for h in parse_diff(windows) if h.path == "crlf.txt"]
    assert crlf.lines == (" one\r", "-two\r", "+TWO\r", " three\r")


def test_parse_diff_of_diff_u_output(tmp_path: Path) -> None:
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


def test_parse_diff_names_the_line_a_broken_patch_stops_at() -> None:
    head = "diff --git a/x.py b/x.py\n--- a/x.py\n+++ b/x.py\n"
    with pytest.raises(DiffParseError, match="line 4: the patch ends inside this hunk"):
        parse_diff(head + "@@ -1,3 +1,3 @@\n a\n-b\n")
    with pytest.raises(DiffParseError) as error:
        parse_diff(head + "@@ -1,2 +1,2 @@\n a\n?b\n+c\n")
    assert error.value.line == 6 and "'?b'" in error.value.reason
    with pytest.raises(DiffParseError, match="line 6: hunk is longer than expected: '-b'"):
        parse_diff(head + "@@ -1 +1 @@\n-a\n-b\n+c\n")
    assert parse_diff_files("") == []


# --- golden cases ------------------------------------------------------------------------------

OLD_PY = """\
import os


def load(path):
    with open(path) as f:
        return f.read()


def save(path, data):
    with open(path, "w") as f:
        f.write(data)
"""

NEW_PY = """\
import os


def load(path):
    with open(path) as f:
        return f.read()


def exists(path):
    return os.path.exists(path)


def save(path, data):
    with open(path, "w", encoding="utf-8") as f:
        f.write(data)
"""

GOLDEN = "\n".join(
    [
        "@@ -6,6 +6,10 @@ def load(path):",
        "         return f.read()",
        " ",
        " ",
        "+def exists(path):",
        "+    return os.path.exists(path)",
        "+",
        "+",
        " def save(path, data):",
        '-    with open(path, "w") as f:',
        '+    with open(path, "w", encoding="utf-8") as f:',
        "         f.write(data)",
    ]
)


def test_hunk_text_golden() -> None:
    (hunk,) = diff_texts(OLD_PY, NEW_PY, "io_utils.py")
    assert hunk.text == GOLDEN
    assert hunk.header == "def load(path):"
    assert hunk.added == [
        (9, "def exists(path):"),
        (10, "    return os.path.exists(path)"),
        (11, ""),
        (12, ""),
        (14, '    with open(path, "w", encoding="utf-8") as f:'),
    ]
    assert hunk.deleted == [(10, '    with open(path, "w") as f:')]
    assert hunk.old_text.splitlines()[0] == "        return f.read()"
    assert hunk.language == "python"


def test_hunk_text_golden_matches_git(git_env: dict[str, str]) -> None:
    assert [h.text for h in git_no_index(git_env, [(OLD_PY, NEW_PY)], 3)[0]] == [GOLDEN]


def test_diff_texts_edges() -> None:
    assert diff_texts("same\n", "same\n", "a.py") == []
    assert diff_texts("a\0b\n", "a\0c\n", "a.bin") == []  # git: "Binary files differ"
    (hunk,) = diff_texts("a\n", "b\n", "new.py", old_path="old.py")
    assert (hunk.path, hunk.old_path) == ("new.py", "old.py")
    (hunk,) = diff_texts("a\n", "b\n", "same.py", old_path="same.py")
    assert hunk.old_path is None
    (hunk,) = diff_texts("", "x\ny", "f.txt")
    assert hunk.text == "@@ -0,0 +1,2 @@\n+x\n+y\n\\ No newline at end of file"
    with pytest.raises(ValueError):
        diff_texts("a", "b", "f.txt", context=-1)


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("src/app.py", "python"),
        ("lib/x.PY", "python"),
        ("web/index.tsx", "typescript"),
        ("Makefile", "make"),
        ("docker/Dockerfile", "dockerfile"),
        ("main.rs", "rust"),
        ("README", None),
        ("archive.tar.gz", None),
    ],
)
def test_language_of(path: str, language: str | None) -> None:
    assert language_of(path) == language


# --- diff_texts against git on generated pairs ---------------------------------------------------

CODE_LINES = [
    "",
    "",
    "    ",
    "\t",
    "{",
    "}",
    "    }",
    "import os",
    "x = 1",
    "# a comment",
    "class Store:",
    "    def __init__(self):",
    "        self.items = []",
    "def load(path):",
    "    if value:",
    "        return value",
    "        return None",
    "    else:",
    "    for item in items:",
    "        total += item",
    "    return total",
    "    pass",
    "\tif (x) {",
    "\t\tx++;",
    "\t}",
    "  @decorator",
    "$var = 1;",
    "_private = True",
    "naïve = 'é'",
    "smile = '😀'",
    "\x0b",  # git's isspace() has no \v or \f: not blank, indent 0
    "\x0c    x",
    " " * 210 + "deep",
]
# heading candidates that git cuts at 80 bytes, inside a multibyte character or before bytes
# it refuses (U+FFFF, an undecodable byte kept as a surrogate escape)
LONG_HEADINGS = [
    "def " + "n" * 74 + "é(x):",
    "def " + "n" * 75 + "€€(x):",
    "def " + "n" * 70 + "\uffff(x):",
    "def " + "n" * 40 + "\udcff(x):",
    "def " + "n" * 90 + "   ",
]


def random_block(rng: random.Random) -> list[str]:
    kind = rng.random()
    if kind < 0.35:  # a function: the shape the indent heuristic is about
        name = rng.choice(["load", "save", "run", "check"]) + str(rng.randint(0, 3))
        body = [
            rng.choice(["    x = 1", "    return x", "    if x:", "        y()", ""])
            for _ in range(rng.randint(1, 5))
        ]
        return [f"def {name}():", *body, ""] + [""] * rng.randint(0, 1)
    if kind < 0.75:
        return [rng.choice(CODE_LINES) for _ in range(rng.randint(1, 4))]
    if kind < 0.8:
        return [rng.choice(LONG_HEADINGS)]
    return [f"value_{rng.randint(0, 12)} = {rng.randint(0, 3)}" for _ in range(rng.randint(1, 3))]


def random_lines(rng: random.Random) -> list[str]:
    target = rng.choice([0, 1, 2, 5, 10, 20, 30, 60, 120])
    lines: list[str] = []
    while len(lines) < target:
        lines += random_block(rng)
    return lines


def random_edit(rng: random.Random, lines: list[str]) -> list[str]:
    new = list(lines)
    for _ in range(rng.randint(1, 4)):
        pos = rng.choice([0, len(new), rng.randint(0, len(new)), rng.randint(0, len(new))])
        size = rng.randint(1, 6)
        kind = rng.random()
        if kind < 0.3:
            new[pos:pos] = random_block(rng)
        elif kind < 0.5:
            del new[pos : pos + size]
        elif kind < 0.7:
            new[pos : pos + size] = random_block(rng)
        elif kind < 0.85:  # repeat the lines just before: a change git can slide
            new[pos:pos] = new[max(0, pos - size) : pos]
        elif new:
            at = min(pos, len(new) - 1)
            new[at] = rng.choice(["    ", "\t", ""]) + new[at] + rng.choice(["", " "])
    return new


def render(lines: list[str], eol: str, final_newline: bool) -> str:
    text = eol.join(lines)
    return text + eol if final_newline and lines else text


def random_pair(rng: random.Random) -> Pair:
    old = random_lines(rng)
    new = random_edit(rng, old)
    eols = rng.choice([("\n", "\n")] * 6 + [("\r\n", "\r\n")] * 2 + [("\n", "\r\n")])
    return (
        render(old, eols[0], rng.random() < 0.75),
        render(new, eols[1], rng.random() < 0.75),
    )


def large_pair(rng: random.Random) -> Pair:
    """Hundreds of lines with frequent blank/brace lines (xdiff discards or keeps them for
    its Myers pass), scattered edits and a long common tail (trimmed by git at -U0)."""
    vocab = ["", "}", "    }", "        return x", "    pass"] + [f"v{i}" for i in range(40)]
    old = [
        rng.choice(vocab) if rng.random() < 0.6 else f"u{rng.randint(0, 900)}" for _ in range(400)
    ]
    new = list(old)
    for _ in range(rng.randint(2, 25)):
        pos = rng.randint(0, len(new))
        new[pos : pos + rng.randint(0, 5)] = [rng.choice(vocab) for _ in range(rng.randint(0, 5))]
    tail = [f"tail line {i} " + "x" * 40 for i in range(rng.choice([0, 30]))]
    return render(old + tail, "\n", True), render(new + tail, "\n", rng.random() < 0.9)


def sparse_pair(rng: random.Random) -> Pair:
    """Lines unique to each side with a filler line sprinkled in: xdiff hides such frequent
    lines from its Myers pass when unmatched lines surround them."""
    filler = rng.choice(["", "}", "    pass"])
    old: list[str] = []
    new: list[str] = []
    for _ in range(rng.randint(70, 160)):
        old.append(filler if rng.random() < 0.22 else f"a{rng.randint(0, 300)}")
        new.append(filler if rng.random() < 0.22 else f"b{rng.randint(0, 300)}")
        if rng.random() < 0.05:
            common = f"c{rng.randint(0, 10)}"
            old.append(common)
            new.append(common)
    return render(old, "\n", True), render(new, "\n", True)


def repetitive_pair(rng: random.Random) -> Pair:
    """A change inside kilobytes of one repeated unit: it can slide as far as the end of the
    file, unless git trimmed the common tail first (-U0)."""
    unit = rng.choice(["x\n", "    pass\n", "\n", "a\nb\n"])
    count = rng.randint(300, 700)
    at = rng.randint(0, count)
    change = rng.choice(["", unit, "new\n", unit * 3])
    return unit * count, unit * at + change + unit * (count - at - rng.randint(0, 2))


HAND_PICKED: list[Pair] = [
    ("", "a\n"),
    ("a\n", ""),
    ("a", "a\n"),
    ("a\n", "a"),
    ("a\r\nb", "a\r\nc"),
    ("x\n" * 5, "x\n" * 7),
    (
        "def f():\n    a\n\n\ndef g():\n    b\n",
        "def f():\n    a\n\n\ndef h():\n    c\n\n\ndef g():\n    b\n",
    ),
    ("if x:\n    a\n    b\nend\n", "if x:\n    a\n    b\n    a\n    b\nend\n"),
    (
        "\n".join(f"line {i}" for i in range(30)) + "\n",
        "\n".join(f"line {i}" for i in range(1, 30)) + "\n",
    ),
    ("top\n" + "\n" * 30 + "bottom\n", "top\n" + "\n" * 25 + "bottom\n"),
    ("\t\tx\n\t  y\n", "\t\tx\n\t  z\n"),
    ("\n\x0b\n\x0b\n", "\n\x0b\n\n\x0b\n\x0b\n"),
    ("\x0c\n  \x0b\n", "\x0c\n\x0c\n  \x0b\n"),
    ("x\n\x0c\tx\n", "x\nx\n\x0c\tx\n"),
    (
        "A heading\n" + "body\n" * 20 + "old\n" + "body\n" * 20 + "old\n",
        "A heading\n" + "body\n" * 20 + "new\n" + "body\n" * 20 + "new\n",
    ),
]


@pytest.mark.parametrize(("context", "count"), [(3, 420), (0, 120), (1, 80), (5, 60)])
def test_diff_texts_equals_git_on_random_edits(
    git_env: dict[str, str], context: int, count: int
) -> None:
    rng = random.Random(1000 + context)
    pairs = [random_pair(rng) for _ in range(count)]
    pairs += [large_pair(rng) for _ in range(8)]
    pairs += [sparse_pair(rng) for _ in range(8)] + [repetitive_pair(rng) for _ in range(8)]
    pairs += [(b, a) for a, b in pairs[:40]] + HAND_PICKED
    assert_same_as_git(git_env, pairs, context)


@st.composite
def edit_pairs(draw: st.DrawFn) -> Pair:
    line = (
        st.sampled_from(CODE_LINES)
        | st.sampled_from(LONG_HEADINGS)
        | st.text(alphabet="ab \t\r", max_size=4)
    )
    old = draw(st.lists(line, max_size=25))
    new = list(old)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(new)))
        end = draw(st.integers(start, min(len(new), start + 6)))
        kind = draw(st.sampled_from(["replace", "repeat"]))
        if kind == "repeat":  # a copy of the lines before: slidable
            new[start:start] = new[max(0, start - (end - start) - 1) : start]
        else:
            new[start:end] = draw(st.lists(line, max_size=5))
    eol = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    return render(old, eol, draw(st.booleans())), render(new, eol, draw(st.booleans()))


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(edit_pairs(), min_size=25, max_size=25))
def test_diff_texts_equals_git_on_hypothesis_edits(
    git_env: dict[str, str], pairs: list[Pair]
) -> None:
    assert_same_as_git(git_env, pairs, 3)
