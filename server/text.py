"""From git's lines to LSP positions and back: diagnostic ranges for hunks, the text
edits that replace whole lines (refinements, instruction edits), and the server's copy of
each open document, kept with LSP's lines.

git splits a text at "\\n" only; LSP also breaks lines at "\\r\\n" and a lone "\\r" (and
nowhere else: not at "\\f", "\\v", "\\x85" or U+2028, where ``str.splitlines`` and so
pygls' own documents break), and counts columns in the client's position encoding
(UTF-16 unless negotiated otherwise).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from urllib.parse import unquote

from lsprotocol.types import (
    Position,
    Range,
    TextDocumentContentChangePartial,
    TextDocumentSyncKind,
    TextEdit,
)
from pygls.workspace import TextDocument, Workspace
from pygls.workspace.position_codec import PositionCodec

from training.hunks import Hunk
from training.review import finding_lines

_LSP_BREAK = re.compile(r"\r\n|\r|\n")
#: What a tokenizer cannot take: lone UTF-16 surrogates (JSON's "\\udc80" arrives as one)
#: and NUL.
_UNTOKENIZABLE = re.compile("[\ud800-\udfff\x00]")


def model_safe(text: str) -> str:
    """``text`` with every lone surrogate and NUL replaced by U+FFFD: one code point and
    one UTF-16 unit for one, so positions and ranges stay where they were."""
    return _UNTOKENIZABLE.sub("\ufffd", text)


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

    @property
    def line_count(self) -> int:
        """LSP lines: the text after its last line break is a line too (maybe empty)."""
        return len(self._lsp_starts)

    def has_line(self, position: Position) -> bool:
        """Whether the position's line exists; a column past its end means its end."""
        return 0 <= position.line < self.line_count

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
        """Where ``hunkwise review`` points for the hunk (``finding_lines`` and
        ``finding_column``): its added lines, from the first one's first non-blank
        character to the end of the last one's text; for a pure deletion, an empty range
        at the start of the line at the deletion point."""
        first, last = finding_lines(hunk)
        begin = self.line_start(first)
        if not hunk.added:
            start = self.position(begin)
            return Range(start, start)
        end = self.line_content_end(first)
        code = self.text[begin:end]
        if code.strip():
            begin += len(code) - len(code.lstrip())
        return Range(self.position(begin), self.position(self.line_content_end(last)))

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


def lsp_lines(text: str) -> list[str]:
    """The text's LSP lines, each with its line break (the last one may have none)."""
    starts = [0, *(match.end() for match in _LSP_BREAK.finditer(text))]
    ends = [*starts[1:], len(text)]
    return [text[start:end] for start, end in zip(starts, ends, strict=True) if end > start]


class LspTextDocument(TextDocument):
    """pygls' document with LSP's lines: incremental edits, positions and ``lines``
    break at "\\n", "\\r\\n" and a lone "\\r" only, and a column past a line's end
    means the end of that line (before its line break), as LSP says."""

    @property
    def lines(self) -> list[str]:
        return lsp_lines(self.source)

    def _apply_incremental_change(self, change: TextDocumentContentChangePartial) -> None:
        text = self.source
        lines = LineMap(text, self.position_codec)
        start, end = lines.offset(change.range.start), lines.offset(change.range.end)
        start, end = min(start, end), max(start, end)
        self._source = text[:start] + change.text + text[end:]


class LspWorkspace(Workspace):
    """pygls' workspace holding ``LspTextDocument``s."""

    @classmethod
    def like(cls, workspace: Workspace, sync_kind: TextDocumentSyncKind) -> LspWorkspace:
        return cls(
            workspace.root_uri,
            sync_kind,
            list(workspace.folders.values()),
            workspace.position_encoding,
        )

    def is_open(self, uri: str) -> bool:
        """Whether the client has the document open (pygls keys documents by the URI
        with its %-escapes decoded)."""
        return unquote(uri) in self.text_documents

    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> TextDocument:
        return LspTextDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self.position_codec,
        )


def _strip_eol(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text
