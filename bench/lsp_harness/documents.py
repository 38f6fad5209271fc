"""Editing a document from an LSP client (any pygls client: pytest-lsp's in the tests,
bench/lsp_client.py's in the benchmarks): open it, and send incremental changes with
LSP positions (UTF-16 columns) computed from code-point offsets."""

from __future__ import annotations

from typing import Any

from lsprotocol import types


def open_document(client: Any, uri: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=version, text=text
            )
        )
    )


def position(text: str, offset: int) -> types.Position:
    """The LSP position (UTF-16 columns) of a code-point offset in ``text``."""
    before = text[:offset]
    line = before.count("\n")
    column = before[before.rfind("\n") + 1 :]
    return types.Position(line, len(column.encode("utf-16-le")) // 2)


def replace(client: Any, uri: str, version: int, text: str, start: int, end: int, new: str) -> str:
    """Send an incremental change replacing ``text[start:end]``; returns the new text."""
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(position(text, start), position(text, end)), text=new
                )
            ],
        )
    )
    return text[:start] + new + text[end:]
