"""git's xdiff in Python (v2.39), so that a diff computed here is the diff ``git diff``
prints: :func:`diff_texts` gives the hunks of two texts (the editor's buffer against its
base, see docs/xdiff.md) and :func:`matching_lines` the lines a diff leaves unchanged (how
mining follows lines from a parent, as ``git blame`` does)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable

from training.gitio.content import git_bytes, looks_binary
from training.hunks import NO_NEWLINE_MARKER, Hunk

# A port of git's xdiff (v2.39: xprepare.c, xdiffi.c, xemit.c, and the parts of diff.c and
# xdiff-interface.c on the default `git diff` path): Myers with xdiff's preprocessing and
# cut-offs, change compaction with the indent heuristic, hunk grouping and the default
# function-name heading. Every step changes the output somewhere, so none is simplified,
# not even the cut-offs that only fire on huge inputs. Lines are compared as Python strings;
# bytes only matter for the heading and the tail trim. Not modelled: what config or
# attributes would change (diff.algorithm, diff.interHunkContext, diff.indentHeuristic=false,
# funcname patterns of diff drivers) and git's size limits for treating a file as binary.

_SNAKE_CNT = 20  # xdiffi.c XDL_SNAKE_CNT
_HEUR_MIN_COST = 256  # XDL_HEUR_MIN_COST
_MAX_COST_MIN = 256  # XDL_MAX_COST_MIN
_K_HEUR = 4  # XDL_K_HEUR
_LINE_MAX = sys.maxsize  # XDL_LINE_MAX
_MAX_EQLIMIT = 1024  # xprepare.c XDL_MAX_EQLIMIT
_SIMSCAN_WINDOW = 100  # XDL_SIMSCAN_WINDOW
_KPDIS_RUN = 4  # XDL_KPDIS_RUN
_MAX_INDENT = 200
_MAX_BLANKS = 20
_INDENT_HEURISTIC_MAX_SLIDING = 100
_INDENT_WEIGHT = 60
_FUNC_LINE_BYTES = 80  # xemit.c struct func_line buf[80]
_GIT_SPACE = " \t\n\r"  # git's sane_ctype isspace(): no \v or \f
_FUNC_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")


def _split_lines(text: str) -> list[str]:
    """The records xdiff compares: lines with their "\\n" (a last line may lack one); "\\r"
    is an ordinary character."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _trim_common_tail(
    old: str, new: str, a: list[str], b: list[str]
) -> tuple[list[str], list[str]]:
    """xdiff-interface.c trim_common_tail(), which git applies only with zero context: drop
    whole 1 KiB blocks of common tail, then give back up to the first newline."""
    old_bytes, new_bytes = git_bytes(old), git_bytes(new)
    trimmed, block = 0, 1024
    end_a, end_b = len(old_bytes), len(new_bytes)
    smaller = min(end_a, end_b)
    while (
        block + trimmed <= smaller
        and old_bytes[end_a - trimmed - block : end_a - trimmed]
        == new_bytes[end_b - trimmed - block : end_b - trimmed]
    ):
        trimmed += block
    newline = old_bytes.find(b"\n", end_a - trimmed) if trimmed else -1
    if newline == -1:
        return a, b
    dropped = old_bytes[newline + 1 :]
    count = dropped.count(b"\n") + (1 if dropped and not dropped.endswith(b"\n") else 0)
    return a[: len(a) - count], b[: len(b) - count]


def _bogosqrt(n: int) -> int:
    i = 1
    while n > 0:
        i <<= 1
        n >>= 2
    return i


def _clean_mmatch(dis: bytearray, i: int, s: int, e: int) -> bool:
    """xprepare.c xdl_clean_mmatch(): is multi-match line i inside a run of unmatched lines?"""
    s = max(s, i - _SIMSCAN_WINDOW)
    e = min(e, i + _SIMSCAN_WINDOW)
    rdis0, rpdis0, r = 0, 1, 1
    while i - r >= s:
        if not dis[i - r]:
            rdis0 += 1
        elif dis[i - r] == 2:
            rpdis0 += 1
        else:
            break
        r += 1
    if rdis0 == 0:
        return False
    rdis1, rpdis1, r = 0, 1, 1
    while i + r <= e:
        if not dis[i + r]:
            rdis1 += 1
        elif dis[i + r] == 2:
            rpdis1 += 1
        else:
            break
        r += 1
    if rdis1 == 0:
        return False
    rdis1 += rdis0
    rpdis1 += rpdis0
    return rpdis1 * _KPDIS_RUN < rpdis1 + rdis1


class _Side:
    """One file as xdiff sees it: class ids per line, the change flags (with a zero sentinel
    on each end: line i is ``rchg[i + 1]``), and the lines kept for the Myers pass."""

    __slots__ = ("ha", "indents", "lines", "nrec", "rchg", "reduced", "rindex")

    def __init__(self, lines: list[str], ha: list[int]) -> None:
        self.lines = lines
        self.ha = ha
        self.nrec = len(lines)
        self.rchg = bytearray(self.nrec + 2)
        self.rindex: list[int] = []
        self.reduced: list[int] = []
        self.indents: list[int | None] = [None] * self.nrec

    def indent(self, i: int) -> int:
        """xdiffi.c get_indent(): columns of leading whitespace (tab = to the next multiple of
        8), -1 for a blank line, at most 200."""
        cached = self.indents[i]
        if cached is not None:
            return cached
        line = self.lines[i]
        rest = line.lstrip(_GIT_SPACE)
        lead = line[: len(line) - len(rest)]
        if "\t" in lead:
            columns = 0
            for char in lead:
                if char == " ":
                    columns += 1
                elif char == "\t":
                    columns += 8 - columns % 8
        else:
            columns = lead.count(" ")
        # git stops counting at 200 even on an all-blank line
        value = _MAX_INDENT if columns >= _MAX_INDENT else (columns if rest else -1)
        self.indents[i] = value
        return value


def _prepare(
    a: list[str],
    b: list[str],
    key: Callable[[str], str] | None = None,
    outside: Counter | None = None,
    sizes: tuple[int, int] | None = None,
) -> tuple[_Side, _Side]:
    """xprepare.c: classify lines (by ``key`` of each line, as ``-w`` compares them with
    whitespace removed), trim the common ends, and drop lines the Myers pass need not see
    (no match on the other side, or many matches amid unmatched lines). ``a`` and ``b``
    may be the middles of two larger files that share the rest line for line: ``outside``
    then counts those shared lines' keys and ``sizes`` gives the whole files' lengths, the
    two things xdiff reads from outside the region it diffs."""
    classes: dict[str, int] = {}
    keys_a, keys_b = (a, b) if key is None else (map(key, a), map(key, b))
    ha1 = [classes.setdefault(line, len(classes)) for line in keys_a]
    ha2 = [classes.setdefault(line, len(classes)) for line in keys_b]
    count1, count2 = [0] * len(classes), [0] * len(classes)
    for h in ha1:
        count1[h] += 1
    for h in ha2:
        count2[h] += 1
    if outside:
        for line, h in classes.items():
            shared = outside.get(line, 0)
            count1[h] += shared
            count2[h] += shared
    x1, x2 = _Side(a, ha1), _Side(b, ha2)
    nrec1, nrec2 = sizes if sizes else (x1.nrec, x2.nrec)

    # xdl_trim_ends
    limit = min(x1.nrec, x2.nrec)
    start = 0
    while start < limit and ha1[start] == ha2[start]:
        start += 1
    tail = 0
    while tail < limit - start and ha1[x1.nrec - 1 - tail] == ha2[x2.nrec - 1 - tail]:
        tail += 1

    # xdl_cleanup_records
    for side, other_count, nrec in ((x1, count2, nrec1), (x2, count1, nrec2)):
        mlim = min(_bogosqrt(nrec), _MAX_EQLIMIT)
        dend = side.nrec - tail - 1
        dis = bytearray(side.nrec + 1)
        for i in range(start, dend + 1):
            nm = other_count[side.ha[i]]
            dis[i] = 0 if nm == 0 else (2 if nm >= mlim else 1)
        for i in range(start, dend + 1):
            if dis[i] == 1 or (dis[i] == 2 and not _clean_mmatch(dis, i, start, dend)):
                side.rindex.append(i)
                side.reduced.append(side.ha[i])
            else:
                side.rchg[i + 1] = 1
    return x1, x2


def _split(
    ha1: list[int],
    off1: int,
    lim1: int,
    ha2: list[int],
    off2: int,
    lim2: int,
    kvdf: list[int],
    kvdb: list[int],
    base: int,
    need_min: bool,
    mxcost: int,
) -> tuple[int, int, bool, bool]:
    """xdiffi.c xdl_split(): the middle snake of the box, or, past xdiff's cost cut-offs, a
    good-enough split point. Returns (i1, i2, min_lo, min_hi). ``base`` offsets diagonals."""
    dmin, dmax = off1 - lim2, lim1 - off2
    fmid, bmid = off1 - off2, lim1 - lim2
    odd = (fmid - bmid) & 1
    fmin = fmax = fmid
    bmin = bmax = bmid
    kvdf[base + fmid] = off1
    kvdb[base + bmid] = lim1
    ec = 0
    while True:
        ec += 1
        got_snake = False

        if fmin > dmin:
            fmin -= 1
            kvdf[base + fmin - 1] = -1
        else:
            fmin += 1
        if fmax < dmax:
            fmax += 1
            kvdf[base + fmax + 1] = -1
        else:
            fmax -= 1
        for d in range(fmax, fmin - 1, -2):
            lo, hi = kvdf[base + d - 1], kvdf[base + d + 1]
            i1 = lo + 1 if lo >= hi else hi
            prev1 = i1
            i2 = i1 - d
            while i1 < lim1 and i2 < lim2 and ha1[i1] == ha2[i2]:
                i1 += 1
                i2 += 1
            if i1 - prev1 > _SNAKE_CNT:
                got_snake = True
            kvdf[base + d] = i1
            if odd and bmin <= d <= bmax and kvdb[base + d] <= i1:
                return i1, i2, True, True

        if bmin > dmin:
            bmin -= 1
            kvdb[base + bmin - 1] = _LINE_MAX
        else:
            bmin += 1
        if bmax < dmax:
            bmax += 1
            kvdb[base + bmax + 1] = _LINE_MAX
        else:
            bmax -= 1
        for d in range(bmax, bmin - 1, -2):
            lo, hi = kvdb[base + d - 1], kvdb[base + d + 1]
            i1 = lo if lo < hi else hi - 1
            prev1 = i1
            i2 = i1 - d
            while i1 > off1 and i2 > off2 and ha1[i1 - 1] == ha2[i2 - 1]:
                i1 -= 1
                i2 -= 1
            if prev1 - i1 > _SNAKE_CNT:
                got_snake = True
            kvdb[base + d] = i1
            if not odd and fmin <= d <= fmax and i1 <= kvdf[base + d]:
                return i1, i2, True, True

        if need_min:
            continue

        # Past the heuristic trigger, settle for a diagonal that got far with a long snake.
        if got_snake and ec > _HEUR_MIN_COST:
            best = 0
            for d in range(fmax, fmin - 1, -2):
                dd = d - fmid if d > fmid else fmid - d
                i1 = kvdf[base + d]
                i2 = i1 - d
                v = (i1 - off1) + (i2 - off2) - dd
                if (
                    v > _K_HEUR * ec
                    and v > best
                    and off1 + _SNAKE_CNT <= i1 < lim1
                    and off2 + _SNAKE_CNT <= i2 < lim2
                ):
                    k = 1
                    while ha1[i1 - k] == ha2[i2 - k]:
                        if k == _SNAKE_CNT:
                            best, best1, best2 = v, i1, i2
                            break
                        k += 1
            if best > 0:
                return best1, best2, True, False

            best = 0
            for d in range(bmax, bmin - 1, -2):
                dd = d - bmid if d > bmid else bmid - d
                i1 = kvdb[base + d]
                i2 = i1 - d
                v = (lim1 - i1) + (lim2 - i2) - dd
                if (
                    v > _K_HEUR * ec
                    and v > best
                    and off1 < i1 <= lim1 - _SNAKE_CNT
                    and off2 < i2 <= lim2 - _SNAKE_CNT
                ):
                    k = 0
                    while ha1[i1 + k] == ha2[i2 + k]:
                        if k == _SNAKE_CNT - 1:
                            best, best1, best2 = v, i1, i2
                            break
                        k += 1
            if best > 0:
                return best1, best2, False, True

        # Enough is enough: take the furthest-reaching path found so far.
        if ec >= mxcost:
            fbest = fbest1 = -1
            for d in range(fmax, fmin - 1, -2):
                i1 = min(kvdf[base + d], lim1)
                i2 = i1 - d
                if lim2 < i2:
                    i1, i2 = lim2 + d, lim2
                if fbest < i1 + i2:
                    fbest, fbest1 = i1 + i2, i1
            bbest = bbest1 = _LINE_MAX
            for d in range(bmax, bmin - 1, -2):
                i1 = max(off1, kvdb[base + d])
                i2 = i1 - d
                if i2 < off2:
                    i1, i2 = off2 + d, off2
                if i1 + i2 < bbest:
                    bbest, bbest1 = i1 + i2, i1
            if (lim1 + lim2) - bbest < fbest - (off1 + off2):
                return fbest1, fbest - fbest1, True, False
            return bbest1, bbest - bbest1, False, True


def _myers(x1: _Side, x2: _Side) -> None:
    """xdiffi.c xdl_recs_cmp() over the reduced lines, with an explicit stack in the same
    order as git's recursion (the diagonal vectors are shared, as in git)."""
    ha1, ha2 = x1.reduced, x2.reduced
    n1, n2 = len(ha1), len(ha2)
    ndiags = n1 + n2 + 3
    kvdf, kvdb = [0] * ndiags, [0] * ndiags
    base = n2 + 1
    mxcost = max(_bogosqrt(ndiags), _MAX_COST_MIN)
    rchg1, rchg2, rindex1, rindex2 = x1.rchg, x2.rchg, x1.rindex, x2.rindex
    stack = [(0, n1, 0, n2, False)]
    while stack:
        off1, lim1, off2, lim2, need_min = stack.pop()
        while off1 < lim1 and off2 < lim2 and ha1[off1] == ha2[off2]:
            off1 += 1
            off2 += 1
        while off1 < lim1 and off2 < lim2 and ha1[lim1 - 1] == ha2[lim2 - 1]:
            lim1 -= 1
            lim2 -= 1
        if off1 == lim1:
            for i in range(off2, lim2):
                rchg2[rindex2[i] + 1] = 1
        elif off2 == lim2:
            for i in range(off1, lim1):
                rchg1[rindex1[i] + 1] = 1
        else:
            i1, i2, min_lo, min_hi = _split(
                ha1, off1, lim1, ha2, off2, lim2, kvdf, kvdb, base, need_min, mxcost
            )
            stack.append((i1, lim1, i2, lim2, min_hi))
            stack.append((off1, i1, off2, i2, min_lo))


def _score_split(side: _Side, split: int) -> tuple[int, int]:
    """xdiffi.c measure_split() + score_add_split(): (effective indent, penalty) of a split
    just above line ``split``; smaller is better."""
    nrec = side.nrec
    end_of_file = split >= nrec
    indent = -1 if end_of_file else side.indent(split)

    pre_blank, pre_indent = 0, -1
    for i in range(split - 1, -1, -1):
        pre_indent = side.indent(i)
        if pre_indent != -1:
            break
        pre_blank += 1
        if pre_blank == _MAX_BLANKS:
            pre_indent = 0
            break

    post_blank, post_indent = 0, -1
    for i in range(split + 1, nrec):
        post_indent = side.indent(i)
        if post_indent != -1:
            break
        post_blank += 1
        if post_blank == _MAX_BLANKS:
            post_indent = 0
            break

    penalty = 0
    if pre_indent == -1 and pre_blank == 0:
        penalty += 1  # START_OF_FILE_PENALTY
    if end_of_file:
        penalty += 21  # END_OF_FILE_PENALTY
    blank_after = 1 + post_blank if indent == -1 else 0
    total_blank = pre_blank + blank_after
    penalty += -30 * total_blank  # TOTAL_BLANK_WEIGHT
    penalty += 6 * blank_after  # POST_BLANK_WEIGHT
    if indent == -1:
        indent = post_indent
    any_blanks = total_blank != 0
    if indent == -1 or pre_indent == -1 or indent == pre_indent:
        pass
    elif indent > pre_indent:
        penalty += 10 if any_blanks else -4  # RELATIVE_INDENT(_WITH_BLANK)_PENALTY
    elif post_indent != -1 and post_indent > indent:
        penalty += 17 if any_blanks else 24  # RELATIVE_OUTDENT(_WITH_BLANK)_PENALTY
    else:
        penalty += 17 if any_blanks else 23  # RELATIVE_DEDENT(_WITH_BLANK)_PENALTY
    return indent, penalty


def _change_compact(side: _Side, other: _Side) -> None:
    """xdiffi.c xdl_change_compact() with the indent heuristic: slide each group of changed
    lines of ``side`` up and down over equal lines, merging groups it meets, then place it
    against a change on the other side, or else where the indent heuristic scores best.

    Groups are numbered by the unchanged lines before them; group k of one side pairs with
    group k of the other, whose flags do not move during this pass."""
    rchg, ha, nrec = side.rchg, side.ha, side.nrec
    orchg, onrec = other.rchg, other.nrec
    unchanged = [i for i in range(onrec) if not orchg[i + 1]]

    def other_has_changes(k: int) -> bool:
        start = unchanged[k - 1] + 1 if k > 0 else 0
        end = unchanged[k] if k < len(unchanged) else onrec
        return end > start

    def slide_up(start: int, end: int) -> tuple[int, int] | None:
        if start > 0 and ha[start - 1] == ha[end - 1]:
            start -= 1
            end -= 1
            rchg[start + 1] = 1
            rchg[end + 1] = 0
            while rchg[start]:
                start -= 1
            return start, end
        return None

    def must_slide_up(start: int, end: int) -> tuple[int, int]:
        moved = slide_up(start, end)
        if moved is None:  # git calls BUG() here: the slide was checked possible before
            raise AssertionError("xdiff group sync broken")
        return moved

    # Jump straight to the first group that has changed lines (an empty group is skipped).
    start = rchg.find(1, 1, nrec + 1) - 1
    if start < 0:
        return
    k = start  # no changed lines before `start`, so every line before it is unchanged
    end = start
    while rchg[end + 1]:
        end += 1

    while True:
        while True:
            groupsize = end - start
            end_matching_other = -1
            while (moved := slide_up(start, end)) is not None:
                start, end = moved
                k -= 1
            earliest_end = end
            if other_has_changes(k):
                end_matching_other = end
            while end < nrec and ha[start] == ha[end]:
                rchg[start + 1] = 0
                start += 1
                rchg[end + 1] = 1
                end += 1
                while rchg[end + 1]:
                    end += 1
                k += 1
                if other_has_changes(k):
                    end_matching_other = end
            if groupsize == end - start:
                break

        if end == earliest_end:
            pass  # the group cannot move
        elif end_matching_other != -1:
            while not other_has_changes(k):
                start, end = must_slide_up(start, end)
                k -= 1
        else:
            best_shift, best_score = -1, (0, 0)
            first = max(earliest_end, end - groupsize - 1, end - _INDENT_HEURISTIC_MAX_SLIDING)
            for shift in range(first, end + 1):
                indent_a, penalty_a = _score_split(side, shift)
                indent_b, penalty_b = _score_split(side, shift - groupsize)
                score = (indent_a + indent_b, penalty_a + penalty_b)
                cmp_indents = (score[0] > best_score[0]) - (score[0] < best_score[0])
                if best_shift == -1 or _INDENT_WEIGHT * cmp_indents + score[1] - best_score[1] <= 0:
                    best_score, best_shift = score, shift
            while end > best_shift:
                start, end = must_slide_up(start, end)
                k -= 1

        # Move to the next group that has changed lines.
        if end == nrec:
            return
        following = rchg.find(1, end + 2, nrec + 1) - 1
        if following < 0:
            return
        k += following - end
        start = end = following
        while rchg[end + 1]:
            end += 1


def _changes(x1: _Side, x2: _Side) -> list[tuple[int, int, int, int]]:
    """xdiffi.c xdl_build_script(): (i1, i2, chg1, chg2) of each change, in file order."""
    rchg1, rchg2, n1, n2 = x1.rchg, x2.rchg, x1.nrec, x2.nrec
    out = []
    i1 = i2 = 0
    while i1 < n1 or i2 < n2:
        if rchg1[i1 + 1] or rchg2[i2 + 1]:
            e1, e2 = i1, i2
            while rchg1[e1 + 1]:
                e1 += 1
            while rchg2[e2 + 1]:
                e2 += 1
            out.append((i1, i2, e1 - i1, e2 - i2))
            i1, i2 = e1, e2
        else:
            # Unchanged lines pair one to one: skip the whole run in one step.
            next1, next2 = rchg1.find(1, i1 + 1, n1 + 1), rchg2.find(1, i2 + 1, n2 + 1)
            run1 = (next1 - 1 if next1 >= 0 else n1) - i1
            run2 = (next2 - 1 if next2 >= 0 else n2) - i2
            step = max(min(run1, run2), 1)
            i1 += step
            i2 += step
    return out


#: Shared lines kept on each side of the changed middle in ``matching_lines``, so that
#: change groups can slide as far as xdiff's compaction would move them.
_ALIGN_MARGIN = 128


def matching_lines(
    a: list[str], b: list[str], key: Callable[[str], str] | None = None
) -> list[tuple[int, int]]:
    """(i, j) for every line that git's diff of ``a`` -> ``b`` leaves unchanged (line i of
    ``a`` is line j of ``b``), in order: what ``git blame`` passes on from a parent. With
    ``key``, lines are equal when their keys are (the indent heuristic still reads the
    lines themselves, as xdiff does under ``-w``).

    Two revisions of a file are mostly the same lines (re-indented ones included, under
    ``key``): the ends they share are paired directly and only the middle (with a margin)
    goes through xdiff, told the whole files' sizes and the shared lines' counts, which
    is all it reads from outside."""
    keys_a, keys_b = (a, b) if key is None else (list(map(key, a)), list(map(key, b)))
    size = min(len(a), len(b))
    head = 0
    while head < size and keys_a[head] == keys_b[head]:
        head += 1
    tail = 0
    while tail < size - head and keys_a[-1 - tail] == keys_b[-1 - tail]:
        tail += 1
    lo = max(0, head - _ALIGN_MARGIN)
    cut = max(0, tail - _ALIGN_MARGIN)
    outside = Counter(keys_a[:lo])
    outside.update(keys_a[len(a) - cut :])
    x1, x2 = _prepare(a[lo : len(a) - cut], b[lo : len(b) - cut], key, outside, (len(a), len(b)))
    _myers(x1, x2)
    _change_compact(x1, x2)
    _change_compact(x2, x1)
    pairs: list[tuple[int, int]] = [(i, i) for i in range(lo)]
    i = j = 0
    for i1, i2, chg1, chg2 in [*_changes(x1, x2), (x1.nrec, x2.nrec, 0, 0)]:
        pairs.extend(zip(range(lo + i, lo + i1), range(lo + j, lo + i2), strict=True))
        i, j = i1 + chg1, i2 + chg2
    a_end, b_end = len(a) - cut, len(b) - cut
    pairs.extend((a_end + k, b_end + k) for k in range(cut))
    return pairs


def _git_utf8_prefix(data: bytes) -> bytes:
    """diff.c sane_truncate_line(): the hunk header line is cut at the first byte that is not
    valid UTF-8 (git also refuses U+FFFE and U+FFFF)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        data = data[: error.start]
        text = data.decode("utf-8")
    cut = min((i for i in (text.find("\ufffe"), text.find("\uffff")) if i >= 0), default=-1)
    return data if cut < 0 else text[:cut].encode("utf-8")


def _function_name(line: str) -> str | None:
    """xemit.c def_ff(), git's heading when no diff driver sets a funcname pattern: a line
    that starts with a letter, '_' or '$', cut to 80 bytes, trailing whitespace removed."""
    if not line or line[0] not in _FUNC_START:
        return None
    data = git_bytes(line[:_FUNC_LINE_BYTES])[:_FUNC_LINE_BYTES].rstrip(b" \t\n\r")
    return _git_utf8_prefix(data).decode("utf-8", "surrogateescape")


def _body_line(prefix: str, record: str, out: list[str]) -> None:
    """xutils.c xdl_emit_diffrec(): one body line, then the marker if it has no newline."""
    if record.endswith("\n"):
        out.append(prefix + record[:-1])
    else:
        out.append(prefix + record)
        out.append(NO_NEWLINE_MARKER)


def _emit(
    a: list[str], b: list[str], changes: list[tuple[int, int, int, int]], context: int
) -> list[tuple[int, int, int, int, str, tuple[str, ...]]]:
    """xemit.c xdl_get_hunk() + xdl_emit_diff() (diff.interhunkcontext at its default 0):
    changes closer than 2 * context + 1 lines share a hunk. Yields (old_start, old_len,
    new_start, new_len, heading, lines) as git prints them."""
    out = []
    heading, heading_searched_to = "", -1
    first = 0
    while first < len(changes):
        last = first
        while (
            last + 1 < len(changes)
            and changes[last + 1][0] - (changes[last][0] + changes[last][2]) <= 2 * context
        ):
            last += 1
        i1, i2 = changes[first][0], changes[first][1]
        s1, s2 = max(i1 - context, 0), max(i2 - context, 0)
        end1 = changes[last][0] + changes[last][2]
        end2 = changes[last][1] + changes[last][3]
        after = min(context, len(a) - end1, len(b) - end2)
        e1, e2 = end1 + after, end2 + after

        # The nearest heading line above the hunk in the old text. git searches only down to
        # where the previous search began and otherwise keeps the previous heading: the same.
        for i in range(min(s1 - 1, len(a) - 1), heading_searched_to, -1):
            name = _function_name(a[i])
            if name is not None:
                heading = name
                break
        heading_searched_to = s1 - 1

        lines: list[str] = []
        for i in range(s2, i2):
            _body_line(" ", b[i], lines)
        pos2 = i2
        for c1, c2, n1, n2 in changes[first : last + 1]:
            for i in range(pos2, c2):
                _body_line(" ", b[i], lines)
            for i in range(c1, c1 + n1):
                _body_line("-", a[i], lines)
            for i in range(c2, c2 + n2):
                _body_line("+", b[i], lines)
            pos2 = c2 + n2
        for i in range(pos2, e2):
            _body_line(" ", b[i], lines)

        # an empty side is numbered from the line before it ("-0,0" for an empty old text)
        old_start = s1 + 1 if e1 > s1 else s1
        new_start = s2 + 1 if e2 > s2 else s2
        out.append((old_start, e1 - s1, new_start, e2 - s2, heading, tuple(lines)))
        first = last + 1
    return out


def diff_texts(
    old: str, new: str, path: str, old_path: str | None = None, context: int = 3
) -> list[Hunk]:
    """The hunks ``git diff --no-index -U<context>`` prints for two texts (git 2.39, default
    options, no diff driver): same boundaries, line pairing, ``@@`` numbers, heading and
    "\\ No newline at end of file" markers; CRs stay in the lines. Binary texts (a NUL in
    the first 8000 bytes) have no hunks, as git prints none for them."""
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    if old == new or looks_binary(old) or looks_binary(new):
        return []
    a, b = _split_lines(old), _split_lines(new)
    if context == 0:
        a, b = _trim_common_tail(old, new, a, b)
    x1, x2 = _prepare(a, b)
    _myers(x1, x2)
    _change_compact(x1, x2)
    _change_compact(x2, x1)
    old_path = old_path if old_path != path else None
    return [
        Hunk(path, old_start, old_len, new_start, new_len, lines, heading, old_path)
        for old_start, old_len, new_start, new_len, heading, lines in _emit(
            a, b, _changes(x1, x2), context
        )
    ]
