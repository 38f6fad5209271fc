"""File content as git sees it: a text's bytes, and git's test for a binary file."""

from __future__ import annotations

#: xdiff-interface.c FIRST_FEW_BYTES: how far into a file git looks for a NUL.
BINARY_PROBE_BYTES = 8000


def git_bytes(text: str) -> bytes:
    """The bytes ``text`` was read from: UTF-8, undecodable bytes (kept as surrogate escapes)
    given back as they were; a lone surrogate of another origin encoded as it is."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that did not come from surrogateescape
        return text.encode("utf-8", "surrogatepass")


def looks_binary(data: bytes | str) -> bool:
    """git's buffer_is_binary(): a NUL in the first 8000 bytes (of a text's UTF-8 bytes), for
    which git prints "Binary files differ" instead of hunks."""
    head = data[:BINARY_PROBE_BYTES]
    if isinstance(head, bytes):
        return b"\0" in head
    return "\0" in head and b"\0" in git_bytes(head)[:BINARY_PROBE_BYTES]
