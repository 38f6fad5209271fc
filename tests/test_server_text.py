"""git lines and LSP positions: hunk ranges (UTF-16 columns, CRLF, a lone CR, pure
deletions) and whole-line replacement edits that keep the buffer's line endings."""

from __future__ import annotations

from lsprotocol.types import Position, PositionEncodingKind, Range
from pygls.workspace.position_codec import PositionCodec

from server.text import LineMap
from training.review import Finding, finding_column, finding_lines
from training.xdiff import diff_texts

UTF16 = PositionCodec(PositionEncodingKind.Utf16)
UTF8 = PositionCodec(PositionEncodingKind.Utf8)


def _range(a: tuple[int, int], b: tuple[int, int]) -> Range:
    return Range(Position(*a), Position(*b))


def test_added_lines_in_utf16_and_utf8_columns() -> None:
    old = "a = 1\nb = 2\n"
    new = "a = 1\ns = '😀é'\nb = 2\n"
    (hunk,) = diff_texts(old, new, "x.py")
    assert LineMap(new, UTF16).hunk_range(hunk) == _range((1, 0), (1, 9))
    assert LineMap(new, UTF8).hunk_range(hunk) == _range((1, 0), (1, 12))


def test_a_range_starts_where_hunkwise_review_points() -> None:
    """From the first added line's first non-blank character (the CLI's line:col) to the
    end of the last added line's text; a blank first line starts at its column 0."""
    old = "def f():\n    return 1\n"
    new = "def f():\n    x = 2\n\tif x:\n        return x\n    return 1\n"
    (hunk,) = diff_texts(old, new, "x.py")
    assert LineMap(new, UTF16).hunk_range(hunk) == _range((1, 4), (3, 16))
    finding = Finding("x.py", 2, 4, 0.9, None, hunk.id, hunk.text)
    assert finding_column(finding) == 5  # 1-based: the LSP range's character 4
    (hunk,) = diff_texts(old, "def f():\n\n  y = 1\n    return 1\n", "x.py")
    assert LineMap("def f():\n\n  y = 1\n    return 1\n", UTF16).hunk_range(hunk) == _range(
        (1, 0), (2, 7)
    )


def test_crlf_and_a_lone_cr() -> None:
    new = "a\r\nadded\r\nb\r\n"
    (hunk,) = diff_texts("a\nb\n", new.replace("\r\n", "\n"), "x.py")
    assert LineMap(new, UTF16).hunk_range(hunk) == _range((1, 0), (1, 5))
    # git sees one line "x\ry"; an editor sees two: the added line after it is LSP line 2.
    new = "x\ry\nadded\n"
    (hunk,) = diff_texts("x\ry\n", new, "x.py")
    assert LineMap(new, UTF16).hunk_range(hunk) == _range((2, 0), (2, 5))


def test_a_pure_deletion_is_a_point_at_the_line_hunkwise_review_reports() -> None:
    old = "".join(f"{n}\n" for n in range(1, 11))
    middle = old.replace("5\n6\n", "")
    (hunk,) = diff_texts(old, middle, "x.py")
    assert LineMap(middle, UTF16).hunk_range(hunk) == _range((4, 0), (4, 0))  # "7" now
    # At the end of the file: the line before the deletion, not one past the end.
    at_end = old.replace("9\n10\n", "")
    (hunk,) = diff_texts(old, at_end, "x.py")
    assert LineMap(at_end, UTF16).hunk_range(hunk) == _range((7, 0), (7, 0))  # "8"
    (hunk,) = diff_texts(old, "", "x.py")
    assert LineMap("", UTF16).hunk_range(hunk) == _range((0, 0), (0, 0))
    for new in (middle, at_end, old.replace("1\n", ""), ""):
        for context in (0, 3):
            for hunk in diff_texts(old, new, "x.py", context=context):
                line = finding_lines(hunk)[0] - 1
                assert LineMap(new, UTF16).hunk_range(hunk) == _range((line, 0), (line, 0))


def test_replacing_lines_keeps_line_endings_and_the_final_newline() -> None:
    lines = LineMap("a\nb\nc\n", UTF16)
    edit = lines.replace_lines(2, 1, "B")
    assert (edit.range, edit.new_text) == (_range((1, 0), (2, 0)), "B\n")
    last = LineMap("a\nb", UTF16).replace_lines(2, 1, "B\n")
    assert (last.range, last.new_text) == (_range((1, 0), (1, 1)), "B")
    crlf = LineMap("a\r\nb\r\nc\r\n", UTF16).replace_lines(1, 2, "x\ny")
    assert (crlf.range, crlf.new_text) == (_range((0, 0), (2, 0)), "x\r\ny\r\n")


def test_selections_take_whole_lines() -> None:
    lines = LineMap("one\ntwo\nthree\nfour\n", UTF16)
    assert lines.selected_lines(_range((1, 2), (2, 1))) == (2, 2, "two\nthree")
    # ending at the start of a line does not take that line
    assert lines.selected_lines(_range((1, 0), (3, 0))) == (2, 2, "two\nthree")
    assert lines.selected_lines(_range((2, 3), (2, 3))) == (3, 1, "three")
    assert lines.offset(Position(99, 0)) == len("one\ntwo\nthree\nfour\n")
    assert lines.offset(Position(0, 99)) == 3
