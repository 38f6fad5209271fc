"""training.hunks: a hunk rendered as git prints it, its two sides, its numbered added and
deleted lines, its content id, and the language guessed from its path."""

from __future__ import annotations

import dataclasses

import pytest

from training.hunks import NO_NEWLINE_MARKER, Hunk, language_of

HUNK = Hunk(
    path="io_utils.py",
    old_start=9,
    old_len=3,
    new_start=9,
    new_len=4,
    lines=(
        " def save(path, data):",
        '-    with open(path, "w") as f:',
        '+    with open(path, "w", encoding="utf-8") as f:',
        "         f.write(data)",
        "+    return path",
        NO_NEWLINE_MARKER,
    ),
    header="def load(path):",
)


def test_a_hunk_renders_as_git_prints_it() -> None:
    assert HUNK.header_line == "@@ -9,3 +9,4 @@ def load(path):"
    assert HUNK.text.split("\n") == [HUNK.header_line, *HUNK.lines]
    one_line = dataclasses.replace(HUNK, old_len=1, new_len=1, header="")
    assert one_line.header_line == "@@ -9 +9 @@"  # git leaves out ",1"


def test_a_hunk_knows_its_sides_and_numbers_its_lines() -> None:
    assert HUNK.old_text.split("\n") == [
        "def save(path, data):",
        '    with open(path, "w") as f:',
        "        f.write(data)",
    ]
    assert HUNK.new_text.split("\n")[-1] == "    return path"
    assert HUNK.deleted == [(10, '    with open(path, "w") as f:')]
    assert HUNK.added == [
        (10, '    with open(path, "w", encoding="utf-8") as f:'),
        (12, "    return path"),
    ]
    assert HUNK.language == "python"


def test_a_hunk_id_is_its_content_not_its_position() -> None:
    moved = dataclasses.replace(HUNK, old_start=90, new_start=91, header="")
    assert moved.id == HUNK.id
    assert dataclasses.replace(HUNK, path="other.py").id != HUNK.id
    assert dataclasses.replace(HUNK, lines=HUNK.lines[:-1]).id != HUNK.id


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
