"""Where each line came from: the blame of every file, kept up to date while the history
streams by, so a fix commit's deleted lines can be traced to the hunks that added them
without running ``git blame`` per fix.

Every hunk of the walk gets a serial number; a file's state is the serial of the hunk
that introduced each of its lines (None where history does not tell: before a
``--max-commits`` window or a shallow clone's boundary). What ``origin_of`` answers for
a line of a fix commit's parent is what ``git blame <fix>^`` says for it.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from training.hunks import Hunk


@dataclass(frozen=True)
class FileLines:
    """The lines of one file in one commit: who introduced each, and its text if known."""

    origins: tuple[int | None, ...]
    texts: tuple[str | None, ...]


EMPTY = FileLines((), ())


def apply_hunks(state: FileLines, hunks: list[Hunk], serials: list[int | None]) -> FileLines:
    """The file after ``hunks``: kept lines keep their origin, added lines get their
    hunk's serial. Unknown parts of a file (not seen in the walk) read as None."""
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
    return FileLines(tuple(origins), tuple(texts))


def pass_to_parent(merged: FileLines, own: set[int | None], parent: FileLines) -> FileLines:
    """For a merge: lines the merge added relative to its first parent, but that another
    parent already had, keep that parent's origin (as ``git blame`` passes them on).

    The merge's added lines are matched, in order, to the same text in the other parent
    (each to the first unused occurrence after the previous match): the alignment of
    ``git blame``'s diff for all but repeated lines, at a fraction of its cost.
    """
    if not parent.texts:
        return merged
    if merged.texts == parent.texts:
        # The merge took the file as the other side left it: git blame then passes the
        # whole file to that parent, lines the first parent shared included.
        return FileLines(parent.origins, merged.texts)
    if own.isdisjoint(merged.origins):
        return merged
    origins = list(merged.origins)
    needed = {text for origin, text in zip(origins, merged.texts, strict=True) if origin in own}
    where: dict[str, list[int]] = {}
    for index, text in enumerate(parent.texts):
        if text in needed:
            where.setdefault(text, []).append(index)
    last = -1
    for index, (origin, text) in enumerate(zip(origins, merged.texts, strict=True)):
        if origin not in own or text is None:
            continue
        candidates = where.get(text)
        if not candidates:
            continue
        position = bisect_right(candidates, last)
        if position < len(candidates):
            last = candidates[position]
            origins[index] = parent.origins[last]
    return FileLines(tuple(origins), merged.texts)


def origin_of(state: FileLines | None, line_number: int) -> int | None:
    """The serial of the hunk that introduced 1-based ``line_number``, or None."""
    if state is None or not 0 < line_number <= len(state.origins):
        return None
    return state.origins[line_number - 1]
