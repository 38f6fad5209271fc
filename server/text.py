"""From git's lines to LSP positions and back: diagnostic ranges for hunks, and the text
edits that replace whole lines (refinements, instruction edits).

git splits a text at "\\n" only; LSP also breaks lines at "\\r\\n" and a lone "\\r", and
counts columns in the client's position encoding (UTF-16 unless negotiated otherwise).
"""

from __future__ import annotations

import re
from bisect import bisect_right

from lsprotocol.types import Position, Range, TextEdit
from pygls.workspace.position_codec import PositionCodec

from training.hunks import Hunk

_LSP_BREAK = re.compile(r"\r\n|\r|\n")


class LineMap:
    """One version of a buffer, indexed by git line (1-based) and by LSP position."""

    def __init__(self, text: str, codec: PositionCodec) -> None:
        self.text = text
        self._codec = codec
        self._git_starts = [0, *(match.end() for match in re.finditer("\n", text))]
        self._lsp_starts = [0, *(match.end() for match in _LSP_BREAK.finditer(text))]

    # -- offsets <-> positions ---------------------------------------------------------

    def position(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(self._lsp_starts, offset) - 1
        start = self._lsp_starts[line]
        return Position(line, self._codec.client_num_units(self.text[start:offset]))

    def offset(self, position: Position) -> int:
        """The code-point offset of an LSP position (clamped to the line and the text)."""
        if position.line >= len(self._lsp_starts):
            return len(self.text)
        start = self._lsp_starts[position.line]
        end = self._lsp_content_end(position.line)
        units = 0
        for index in range(start, end):
            if units >= position.character:
                return index
            units += self._codec.client_num_units(self.text[index])
        return end

    def _lsp_content_end(self, line: int) -> int:
        if line + 1 >= len(self._lsp_starts):
            return len(self.text)
        end = self._lsp_starts[line + 1]
        return end - 2 if self.text[max(end - 2, 0) : end] == "\r\n" else end - 1

    # -- git lines ---------------------------------------------------------------------

    def line_start(self, line: int) -> int:
        """Offset where 1-based git line ``line`` starts (the end of the text past it)."""
        if line < 1:
            return 0
        if line > len(self._git_starts):
            return len(self.text)
        return self._git_starts[line - 1]

    def line_content_end(self, line: int) -> int:
        """Offset where git line ``line``'s content ends (before its "\\r\\n" or "\\n")."""
        if line >= len(self._git_starts):
            return len(self.text)
        end = self._git_starts[line] - 1
        if end > 0 and self.text[end - 1] == "\r":
            end -= 1
        return max(end, self.line_start(line))

    def git_line(self, offset: int) -> int:
        """The 1-based git line holding ``offset``."""
        return bisect_right(self._git_starts, max(0, offset))

    def hunk_range(self, hunk: Hunk) -> Range:
        """The hunk's added lines, or, for a pure deletion, an empty range where the
        deleted lines were."""
        added = hunk.added
        if added:
            start = self.line_start(added[0][0])
            end = self.line_content_end(added[-1][0])
            return Range(self.position(start), self.position(end))
        point = self.position(self.line_start(deletion_line(hunk)))
        return Range(point, point)

    def hunk_code(self, hunk: Hunk) -> tuple[int, int, str]:
        """(first line, line count, code) of the hunk's new side in this buffer."""
        first, count = max(hunk.new_start, 1), hunk.new_len
        code = self.text[self.line_start(first) : self.line_start(first + count)]
        return first, count, _strip_eol(code)

    def selected_lines(self, selection: Range) -> tuple[int, int, str]:
        """(first line, line count, code) of the whole lines a selection touches; a
        selection that ends at the start of a line does not take that line."""
        start, end = self.offset(selection.start), self.offset(selection.end)
        if end < start:
            start, end = end, start
        first = self.git_line(start)
        last = self.git_line(end)
        if end > start and last > first and end == self.line_start(last):
            last -= 1
        count = last - first + 1
        code = self.text[self.line_start(first) : self.line_start(first + count)]
        return first, count, _strip_eol(code)

    def replace_lines(self, first: int, count: int, new_code: str) -> TextEdit:
        """An edit replacing ``count`` whole lines from ``first`` with ``new_code``, keeping
        the buffer's line endings and its final newline (or lack of one)."""
        start, end = self.line_start(first), self.line_start(first + count)
        old = self.text[start:end]
        eol = "\r\n" if "\r\n" in (old or self.text) else "\n"
        if eol == "\r\n" and "\r\n" not in new_code:
            new_code = new_code.replace("\n", "\r\n")
        if old.endswith("\n") and new_code and not new_code.endswith("\n"):
            new_code += eol
        elif not old.endswith("\n") and new_code.endswith("\n"):
            new_code = _strip_eol(new_code)
        return TextEdit(Range(self.position(start), self.position(end)), new_code)


def deletion_line(hunk: Hunk) -> int:
    """The 1-based new-side line now standing where a hunk's first deleted lines were
    (one past the end of the text when they were at its end)."""
    if hunk.new_len == 0:  # "+N,0": N is the line before the deletion
        return hunk.new_start + 1
    line = hunk.new_start
    for body in hunk.lines:
        tag = body[:1]
        if tag == "-":
            break
        if tag == " ":
            line += 1
    return line


def _strip_eol(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text
