"""Patch files a user hands to ``hunkwise review --patch``: unified diffs from ``git diff``,
``gh pr diff`` or ``diff -u``, read with unidiff after git's file headers are respelled so
that names with spaces, quotes or " b/" in them read whole."""

from __future__ import annotations

import io
from dataclasses import dataclass

from unidiff import PatchedFile, PatchSet
from unidiff.errors import UnidiffParseError

from training.gitio.paths import quote_text, unquote_text
from training.hunks import NO_NEWLINE_MARKER, Hunk

_GIT_HEADER = "diff --git "
#: The side prefixes of git's diff.mnemonicPrefix: (i)ndex, (w)ork tree, (c)ommit, (o)bject,
#: and 1/ 2/ of --no-index.
_MNEMONIC_PREFIXES = frozenset(
    {("i/", "w/"), ("c/", "w/"), ("c/", "i/"), ("o/", "w/"), ("1/", "2/")}
)


class DiffParseError(ValueError):
    """A unified diff that does not parse: ``line`` (1-based) is where parsing stopped."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class PatchFile:
    """One file of a unified diff: its hunks and what its header says about it."""

    path: str
    #: the old path when it differs (a rename or copy)
    old_path: str | None
    hunks: tuple[Hunk, ...]
    status: str  # "A" added, "D" deleted, "M" modified, "R" renamed or copied
    binary: bool = False
    submodule: bool = False


def _quoted_end(text: str) -> int:
    """Where the C-quoted name that ``text`` starts with ends (just past its closing quote),
    or -1 when it does not close."""
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return -1


def _file_line_name(rest: str) -> str:
    """The name on a ``---`` or ``+++`` line (``rest`` follows the marker): a quoted name,
    or all up to a tab (``diff -u`` puts a date there, git a lone tab after a name with a
    space in it)."""
    if rest.startswith('"') and (end := _quoted_end(rest)) > 0:
        return rest[:end]
    return rest.split("\t", 1)[0]


def _git_line_names(body: str) -> tuple[str, str] | None:
    """The two names of a ``diff --git`` line (``body`` follows ``diff --git ``), as written.
    Unquoted names with a space are ambiguous ("a/x b/y b/x b/y"); git writes the same name
    twice except for a rename or copy, which have lines of their own, so a line that reads
    the same on both halves splits in the middle. None: no two names."""
    if body.startswith('"') and (end := _quoted_end(body)) > 0:
        return body[:end], body[end + 1 :]
    if body.endswith('"'):  # an unquoted old name and a quoted new one
        at = body.find(' "')
        while at >= 0:
            if _quoted_end(body[at + 1 :]) == len(body) - at - 1:
                return body[:at], body[at + 1 :]
            at = body.find(' "', at + 1)
    half = (len(body) - 1) // 2
    old, new = body[:half], body[half + 1 :]
    if body[half : half + 1] == " " and (
        old == new or (old[1:2] == new[1:2] == "/" and old[2:] == new[2:])
    ):
        return old, new
    at = body.find(" b/")
    at = at if at >= 0 else body.find(" ")
    return (body[:at], body[at + 1 :]) if at >= 0 else None


def _respell_git_header(lines: list[str], start: int) -> int:
    """Rewrite the names of the git file header at ``lines[start]`` (its ``diff --git``,
    ``---`` and ``+++`` lines) quoted, spaces escaped, so that unidiff, which splits a
    ``diff --git`` line at its last " b/", reads them whole. The ``---`` and ``+++`` lines
    name each side unambiguously; the ``diff --git`` line is read only for a file without
    them (a mode change, a binary file, a rename without edits: the rename lines name
    those, see :func:`_file_paths`). The prefixes of git's ``diff.mnemonicPrefix`` become
    a/ and b/. Returns where the header ends."""
    end = start + 1
    while end < len(lines) and not lines[end].startswith(("@@ -", _GIT_HEADER)):
        end += 1
    names = _git_line_names(lines[start][len(_GIT_HEADER) :].rstrip("\r\n"))
    if names is None:
        return end  # not a header unidiff reads either
    old, new = (unquote_text(name) for name in names)
    prefixes = (old[:2], new[:2]) if (old[:2], new[:2]) in _MNEMONIC_PREFIXES else ("", "")
    minus = plus = None
    for index in range(start + 1, end):
        if minus is None and lines[index].startswith("--- "):
            minus = index
        elif plus is None and lines[index].startswith("+++ "):
            plus = index
    spelled = []
    for marker, index, name, prefix, standard in (
        ("--- ", minus, old, prefixes[0], "a/"),
        ("+++ ", plus, new, prefixes[1], "b/"),
    ):
        written = None if index is None else _file_line_name(lines[index][4:].rstrip("\r\n"))
        if written is not None and written != "/dev/null":
            name = unquote_text(written)
        if prefix and name.startswith(prefix):
            name = standard + name[len(prefix) :]
        spelled.append(quote_text(name))
        if written is not None and written != "/dev/null":
            lines[index] = f"{marker}{spelled[-1]}\n"
    lines[start] = f"{_GIT_HEADER}{spelled[0]} {spelled[1]}\n"
    return end


def _patch_lines(text: str) -> list[str]:
    """The lines of a patch, each with its "\\n". A patch every line of which ends in CRLF
    (saved on Windows) loses those CRs; in any other a CR stays part of its line (the diff
    of a file with CRLF line ends)."""
    # StringIO splits on "\n" only, so a lone CR stays inside its line.
    lines = io.StringIO(text).readlines()
    ended = [line for line in lines if line.endswith("\n")]
    if ended and all(line.endswith("\r\n") for line in ended):
        lines = [
            line[:-2] + "\n" if line.endswith("\r\n") else line.removesuffix("\r") for line in lines
        ]
    return lines


def _parse_patch(lines: list[str]) -> PatchSet:
    """unidiff's parse of ``lines`` with git's file headers respelled; a
    :class:`DiffParseError` names the line it stopped at."""
    fed = list(lines)
    index = 0
    while index < len(fed):
        if fed[index].startswith(_GIT_HEADER):
            index = _respell_git_header(fed, index)
        else:
            index += 1
    read = hunk_start = 0

    def feed():
        nonlocal read, hunk_start
        for read, line in enumerate(fed, 1):
            if line.startswith("@@ -"):
                hunk_start = read
            yield line

    try:
        return PatchSet(feed())
    except UnidiffParseError as error:
        message = str(error)
        if message.startswith("Hunk is shorter") and read == len(fed):
            raise DiffParseError(
                hunk_start, "the patch ends inside this hunk (fewer lines than its @@ header says)"
            ) from None
        kind = message.split(":", 1)[0].strip()
        shown = lines[read - 1].rstrip("\r\n") if read else ""
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise DiffParseError(read, f"{kind.lower()}: {shown!r}") from None


def _side_path(name: str | None, prefix: str) -> str | None:
    if name is None or name == "/dev/null":
        return None
    name = unquote_text(name)
    return name[len(prefix) :] if name.startswith(prefix) else name


def _file_paths(patched: PatchedFile) -> tuple[str, str | None]:
    """(path, old_path) of one file of a diff; old_path only for a rename or copy."""
    old = _side_path(patched.source_file, "a/")
    new = _side_path(patched.target_file, "b/")
    # "rename from/to" lines are unambiguous where the "diff --git" line is not (spaces).
    for line in patched.patch_info or ():
        for key, is_old in (
            ("rename from ", True),
            ("copy from ", True),
            ("rename to ", False),
            ("copy to ", False),
        ):
            if line.startswith(key):
                value = unquote_text(line[len(key) :].rstrip("\r\n"))
                old, new = (value, new) if is_old else (old, value)
    if new is None:
        return old or "", None
    return new, (old if old is not None and old != new else None)


def _is_submodule(patched: PatchedFile) -> bool:
    """git's header gives a submodule (a gitlink) mode 160000."""
    for line in patched.patch_info or ():
        line = line.rstrip("\r\n")
        if line.endswith(" 160000") and line.startswith(
            ("index ", "new file mode ", "deleted file mode ", "new mode ", "old mode ")
        ):
            return True
    return False


def parse_diff_files(text: str) -> list[PatchFile]:
    """The files of a unified diff, in order, with their hunks: ``git diff`` or ``gh pr
    diff`` output (renames, copies, new and deleted files; quoted names, names holding
    " b/"; binary files, which have no hunks, and submodules marked) or ``diff -u`` output
    without ``diff --git`` headers. Hunk lines keep their prefix and any CR, except in a
    patch all of whose lines end in CRLF (see :func:`_patch_lines`). A diff that does not
    parse raises :class:`DiffParseError`."""
    files: list[PatchFile] = []
    for patched in _parse_patch(_patch_lines(text)):
        path, old_path = _file_paths(patched)
        hunks = []
        for hunk in patched:
            lines = tuple(
                NO_NEWLINE_MARKER
                if line.line_type == "\\"
                else line.line_type + line.value.removesuffix("\n")
                for line in hunk
                # unidiff attaches a blank separator line after a hunk as an "empty" line
                if line.line_type != ""
            )
            hunks.append(
                Hunk(
                    path=path,
                    old_start=hunk.source_start,
                    old_len=hunk.source_length,
                    new_start=hunk.target_start,
                    new_len=hunk.target_length,
                    lines=lines,
                    # git trims a heading's trailing whitespace: a CR here is the patch's
                    header=hunk.section_header.rstrip("\r"),
                    old_path=old_path,
                )
            )
        if patched.is_added_file:
            status = "A"
        elif patched.is_removed_file:
            status = "D"
        else:
            status = "M" if old_path is None else "R"
        files.append(
            PatchFile(
                path=path,
                old_path=old_path,
                hunks=tuple(hunks),
                status=status,
                binary=patched.is_binary_file,
                submodule=_is_submodule(patched),
            )
        )
    return files
