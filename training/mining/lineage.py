"""Where each line came from: the blame of every file, kept up to date while the history
streams by, so a fix commit's deleted lines can be traced to the hunks that added them
without running ``git blame`` per fix.

Every hunk of the walk gets a serial number; a file's state is the serial of the hunk
that introduced each of its lines (None where history does not tell: before a
``--max-commits`` window or a shallow clone's boundary). What ``origin_of`` answers for
a line of a fix commit's parent is what ``git blame -w <fix>^`` says for it: like SZZ
implementations (PyDriller's among them), a change of whitespace alone introduces
nothing, so a re-indented line keeps the commit that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.hunks import Hunk, matching_lines


@dataclass(frozen=True)
class FileLines:
    """The lines of one file in one commit: who introduced each, and its text if known."""

    origins: tuple[int | None, ...]
    texts: tuple[str | None, ...]


EMPTY = FileLines((), ())


def whitespace_free(text: str) -> str:
    """A line as ``git blame -w`` compares it: every whitespace character removed."""
    return "".join(text.split())


def apply_hunks(state: FileLines, hunks: list[Hunk], serials: list[int | None]) -> FileLines:
    """The file after ``hunks``: kept lines keep their origin, added lines get their
    hunk's serial. Where a hunk only re-indented (or re-spaced) a line, the file is
    aligned again with whitespace ignored, as ``git blame -w`` does, so such a line keeps
    the origin of the line it replaces. Unknown parts of a file (not seen in the walk)
    read as None."""
    old_origins, old_texts = state.origins, state.texts
    origins: list[int | None] = []
    texts: list[str | None] = []
    pos = 0
    for hunk, serial in zip(hunks, serials, strict=True):
        start = hunk.old_start - 1 if hunk.old_len > 0 else hunk.old_start
        start = max(start, pos)
        origins.extend(old_origins[pos:start])
        texts.extend(old_texts[pos:start])
        # A file we never saw whole: the lines before this hunk are unknown.
        missing = start - max(pos, len(old_origins))
        if missing > 0:
            origins.extend([None] * missing)
            texts.extend([None] * missing)
        index = start
        for line in hunk.lines:
            tag = line[:1]
            if tag == " ":
                origins.append(old_origins[index] if index < len(old_origins) else None)
                texts.append(line[1:])
                index += 1
            elif tag == "-":
                index += 1
            elif tag == "+":
                origins.append(serial)
                texts.append(line[1:])
        pos = index
    origins.extend(old_origins[pos:])
    texts.extend(old_texts[pos:])
    if any(_changes_whitespace_only(hunk) for hunk in hunks):
        _align_ignoring_whitespace(state, origins, texts, hunks, serials)
    return FileLines(tuple(origins), tuple(texts))


def _changes_whitespace_only(hunk: Hunk) -> bool:
    """Whether a line the hunk deletes comes back with other whitespace (a cheap test:
    most hunks have no such line, and moving a line unchanged does not count)."""
    deleted = {line[1:] for line in hunk.lines if line[:1] == "-"}
    if not deleted:
        return False
    keys = {whitespace_free(line) for line in deleted}
    return any(
        line[:1] == "+" and line[1:] not in deleted and whitespace_free(line[1:]) in keys
        for line in hunk.lines
    )


def _align_ignoring_whitespace(
    state: FileLines,
    origins: list[int | None],
    texts: list[str | None],
    hunks: list[Hunk],
    serials: list[int | None],
) -> None:
    """Origins as ``git blame -w`` gives them: the whole file diffed again with whitespace
    ignored; a line that diff keeps takes its old origin, any other line is this commit's
    (the serial of the hunk it falls in, or the nearest one before it)."""
    kept = {j: i for i, j in matching_lines(_lines(state.texts), _lines(texts), _key)}
    starts = [
        (hunk.new_start - (1 if hunk.new_len > 0 else 0), serial)
        for hunk, serial in zip(hunks, serials, strict=True)
    ]
    current = 0
    for j in range(len(origins)):
        while current + 1 < len(starts) and starts[current + 1][0] <= j:
            current += 1
        if texts[j] is None:  # a line the walk never saw stays unknown
            continue
        if j in kept:
            i = kept[j]
            origins[j] = state.origins[i] if i < len(state.origins) else None
        else:
            origins[j] = starts[current][1]


def pass_to_parent(merged: FileLines, own: set[int | None], parent: FileLines) -> FileLines:
    """For a merge: lines the merge added relative to its first parent, but that another
    parent already had, keep that parent's origin, as ``git blame`` passes them on: the
    merged file is diffed against that parent (git's diff, whitespace ignored) and the
    merge's own lines in unchanged stretches take the parent's origins. When the merged
    file equals the parent's, the whole file goes to that parent."""
    if not parent.texts:
        return merged
    if merged.texts == parent.texts:
        # git blame passes the whole file to a parent with the same blob, lines the first
        # parent shared included (blame.c, pass_whole_blame).
        return FileLines(parent.origins, merged.texts)
    if own.isdisjoint(merged.origins):
        return merged
    origins = list(merged.origins)
    for i, j in matching_lines(_lines(parent.texts), _lines(merged.texts), _key):
        if origins[j] in own:
            origins[j] = parent.origins[i]
    return FileLines(tuple(origins), merged.texts)


_UNKNOWN = "\0unknown "


def _lines(texts: tuple[str | None, ...] | list[str | None]) -> list[str]:
    """Lines for an alignment; an unknown line becomes a marker that matches nothing."""
    return [text if text is not None else f"{_UNKNOWN}{index}" for index, text in enumerate(texts)]


def _key(line: str) -> str:
    """A line as ``git blame -w`` compares it; unknown lines stay distinct."""
    return line if line.startswith(_UNKNOWN) else whitespace_free(line)


def origin_of(state: FileLines | None, line_number: int) -> int | None:
    """The serial of the hunk that introduced 1-based ``line_number``, or None."""
    if state is None or not 0 < line_number <= len(state.origins):
        return None
    return state.origins[line_number - 1]
