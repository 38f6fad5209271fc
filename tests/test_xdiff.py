"""training.xdiff against git: ``diff_texts`` equals ``git diff --no-index`` on golden cases
and on hundreds of generated edit pairs (random and hypothesis-drawn), at several contexts."""

from __future__ import annotations

import dataclasses
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gitdiff import git, isolated_env
from training.gitio.patch import parse_diff_files
from training.hunks import Hunk
from training.xdiff import diff_texts

Pair = tuple[str, str]


@pytest.fixture(scope="module")
def git_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return isolated_env(tmp_path_factory.mktemp("home"))


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
    for hunk in (h for file in parse_diff_files(out) for h in file.hunks):
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
