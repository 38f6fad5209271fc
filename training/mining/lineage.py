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

from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache

from training.hunks import Hunk
from training.xdiff import matching_lines


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
    hunk's serial, except lines that only changed whitespace, which keep the origin of
    the line they replace, as ``git blame -w`` aligns them (``_reattribute``). Unknown
    parts of a file (not seen in the walk) read as None."""
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
        # The change block being read: its deleted lines (old index, text) and the
        # positions of its added lines in the new file.
        deleted: list[tuple[int, str]] = []
        added: list[int] = []
        for line in hunk.lines:
            tag = line[:1]
            if tag == " ":
                if deleted and added:
                    _reattribute(deleted, added, old_origins, origins, texts)
                deleted, added = [], []
                origins.append(old_origins[index] if index < len(old_origins) else None)
                texts.append(line[1:])
                index += 1
            elif tag == "-":
                if added:  # git prints a block's deletions first: this is a new block
                    if deleted:
                        _reattribute(deleted, added, old_origins, origins, texts)
                    deleted, added = [], []
                deleted.append((index, line[1:]))
                index += 1
            elif tag == "+":
                added.append(len(origins))
                origins.append(serial)
                texts.append(line[1:])
        if deleted and added:
            _reattribute(deleted, added, old_origins, origins, texts)
        pos = index
    origins.extend(old_origins[pos:])
    texts.extend(old_texts[pos:])
    return FileLines(tuple(origins), tuple(texts))


def _reattribute(
    deleted: list[tuple[int, str]],
    added: list[int],
    old_origins: tuple[int | None, ...],
    origins: list[int | None],
    texts: list[str | None],
) -> None:
    """``git blame -w`` for one change block of the plain diff: added lines that equal
    deleted ones once whitespace is ignored take their origins, equal lines paired in
    order (line for line when the block only re-indents). git diffs the whole file
    instead; the two differ only where a line that repeats nearby sits next to the
    re-indented one and git's diff pairs the repeats the other way (docs/mining.md):
    diffing whole files for every re-indenting commit would cost a third of the walk."""
    old_keys = [_key(text) for _, text in deleted]
    new_keys = [_key(texts[position]) for position in added]
    if set(old_keys).isdisjoint(new_keys):
        return
    for i, j in _in_order(old_keys, new_keys):
        old_index = deleted[i][0]
        origins[added[j]] = old_origins[old_index] if old_index < len(old_origins) else None


def _in_order(old_keys: list[str], new_keys: list[str]) -> list[tuple[int, int]]:
    """Pairs of equal keys, each new key with the first unused old one after the last
    pair: a common subsequence, the one a diff finds in a block of a few lines."""
    where: dict[str, list[int]] = {}
    for i, key in enumerate(old_keys):
        where.setdefault(key, []).append(i)
    pairs = []
    last = -1
    for j, key in enumerate(new_keys):
        positions = where.get(key)
        if positions:
            k = bisect_right(positions, last)
            if k < len(positions):
                last = positions[k]
                pairs.append((last, j))
    return pairs


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
    for i, j in _matching(parent.texts, merged.texts):
        if origins[j] in own:
            origins[j] = parent.origins[i]
    return FileLines(tuple(origins), merged.texts)


_UNKNOWN = "\0unknown "


def _matching(
    old: tuple[str | None, ...] | list[str | None], new: tuple[str | None, ...] | list[str | None]
) -> list[tuple[int, int]]:
    """Line pairs of git's diff of ``old`` -> ``new`` with whitespace ignored (the whole
    files: git's choices among repeated lines depend on counts over all of them)."""
    return matching_lines(_lines(old), _lines(new), _key)


def _lines(texts: tuple[str | None, ...] | list[str | None]) -> list[str]:
    """Lines for an alignment; an unknown line becomes a marker that matches nothing."""
    return [text if text is not None else f"{_UNKNOWN}{index}" for index, text in enumerate(texts)]


@lru_cache(maxsize=1 << 16)
def _key(line: str) -> str:
    """A line as ``git blame -w`` compares it; unknown lines stay distinct. Cached: the
    same lines come back in every revision of a file."""
    return line if line.startswith(_UNKNOWN) else whitespace_free(line)


def origin_of(state: FileLines | None, line_number: int) -> int | None:
    """The serial of the hunk that introduced 1-based ``line_number``, or None."""
    if state is None or not 0 < line_number <= len(state.origins):
        return None
    return state.origins[line_number - 1]
