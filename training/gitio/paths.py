"""git's C-style quoting of path names (quote.c): undone where hunkwise reads the names in
git's diff headers or in a patch, done where a patch's names are respelled for unidiff."""

from __future__ import annotations

from training.gitio.content import git_bytes

# The escapes git's quote_c_style() writes; any other byte it quotes is written as \ooo.
_ESCAPES = dict(zip(b'abtnvfr"\\', b'\a\b\t\n\v\f\r"\\', strict=True))
_OCTAL = frozenset(b"01234567")


def unquote(name: bytes, strict: bool = True) -> bytes:
    """A name as git wrote it with its quoting undone (``"t\\303\\251st"`` -> ``tést``); a
    name that does not start with a quote is returned as it is. What git never writes, a
    quote that does not close or an escape it has no use for, raises ValueError when
    ``strict`` (a damaged stream: the reader marks the file malformed) and otherwise stays
    as written (a hand-made patch)."""
    if not name.startswith(b'"'):
        return name
    if len(name) < 2 or not name.endswith(b'"'):
        if strict:
            raise ValueError(f"unbalanced quote in {name!r}")
        return name
    body, out, i = name[1:-1], bytearray(), 0
    while i < len(body):
        byte = body[i]
        if byte == 0x5C:  # a backslash
            escaped, octal = body[i + 1 : i + 2], body[i + 1 : i + 4]
            if escaped and escaped[0] in _ESCAPES:
                out.append(_ESCAPES[escaped[0]])
                i += 2
                continue
            if len(octal) == 3 and octal[0] in b"0123" and _OCTAL.issuperset(octal):
                out.append(int(octal, 8))
                i += 4
                continue
            if strict:
                raise ValueError(f"bad escape in {name!r}")
        out.append(byte)
        i += 1
    return bytes(out)


def unquote_text(name: str) -> str:
    """:func:`unquote` of a name in a patch read as text (bytes that are not UTF-8 kept as
    surrogate escapes), tolerant: a backslash git would not write stays as it is."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    return unquote(git_bytes(name), strict=False).decode("utf-8", "surrogateescape")


def quote_text(name: str) -> str:
    """C-style quoting that git and unidiff read back, spaces escaped too (``x b/y`` ->
    ``"x\\040b/y"``): a name that a split at a space cannot cut in two."""
    out = []
    for byte in git_bytes(name):
        if byte in (0x22, 0x5C):  # '"' and '\\'
            out.append("\\" + chr(byte))
        elif 0x20 < byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'
