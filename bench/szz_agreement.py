"""Agreement of hunkwise's SZZ attribution with an independent one: PyDriller's
``Git.get_commits_last_modified_lines`` (``git blame -w <fix>^`` per modified file).

    python bench/szz_agreement.py /path/to/repo [--fixes 200] [--seed 0]
        [--horizon-commits H] [--json]

hunkwise walks the history once (``walk_history``) and keeps one ``FixTrace`` per deleted
line of a fix commit it traced. From the fix commits with traces, ``--fixes`` are drawn at
random (``--seed``). Each side becomes a set of pairs (fix, path in the fix's parent,
introducing commit):

* hunkwise: the fix's traces with a known ``introduced_by``;
* PyDriller: the (path, shas) of ``get_commits_last_modified_lines``. It keys a renamed
  file by its new path and a deleted one by its old path; keys are mapped back to the
  fix-parent path with PyDriller's own list of modified files.

Both sides then get the same rules:

* horizon: the introducing commit lies within the horizon before the fix in the walk's
  topological order (``0 < index(fix) - index(intro) <= horizon``, as ``_label`` counts;
  shas outside the walk are dropped);
* files: only the files hunkwise traces: modified, renamed or deleted in the fix's
  first-parent diff (as hunkwise's own parser reads it), not binary, not malformed, no
  submodule, old and new path passing ``filters.path_reason``. Pairs left out this way are
  counted apart. Files hunkwise stops following for other reasons (minified when added,
  over ``max_file_bytes``) stay in: their lines show up as "hunkwise: no origin for the
  line", so losing a file's lines stays visible.

Precision = |both| / |hunkwise|, recall = |both| / |PyDriller|, micro-averaged over the
chosen fixes. Each pair only one side has is classified from the lines behind it, with
real ``git blame`` of the fix's parent (``-w`` as both PyDriller and hunkwise blame, plain
to tell a missed whitespace-only change, ``--first-parent`` to tell lines a merge carried)
and each side's line rules:

* whitespace: plain blame agrees with hunkwise, ``blame -w`` with PyDriller;
* comment/blank-line rule: PyDriller's ``_useless_line`` skips a stripped line that is
  empty or starts with ``//``, ``#``, ``/*``, ``'''``, three double quotes or ``*`` in every
  language (docstrings, ``*args``, Markdown list items and headings); hunkwise's
  ``is_trivial_line`` skips blank lines and its language's comment prefixes;
* whitespace-only change skipped by hunkwise: the same hunk adds the line back, give or
  take whitespace (hunkwise does not trace it; PyDriller blames it);
* merge attribution / rename / other: hunkwise's origin differs from ``blame -w``'s: the
  line came through a merge (first-parent blame differs, or either side names a merge),
  from another path, or neither;
* hunkwise: no origin / did not trace the line; line not in PyDriller's diff; PyDriller's
  blame failed.

A pair takes its lines' most common class. Besides the raw figures, precision and recall
are given under the same line rules: pairs only one side has whose every line is set
aside by one side's comment or whitespace-only rule leave the count, so what remains
measures the attribution itself. PyDriller writes ``blame.markUnblamableLines``
into the configuration of the repository it opens, so it works on a temporary
``git clone --bare --shared`` of REPO; REPO is only read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydriller import Git  # noqa: E402
from pydriller.domain.commit import ModificationType, ModifiedFile  # noqa: E402

from training.gitio.command import GIT_CONFIG, read_only_env  # noqa: E402
from training.gitio.log import DIFF_OPTIONS, FileDiff, parse_git_diff  # noqa: E402
from training.hunks import language_of  # noqa: E402
from training.mining import filters  # noqa: E402
from training.mining.lineage import whitespace_free  # noqa: E402
from training.mining.miner import History, MineOptions, horizon_of, walk_history  # noqa: E402

Pair = tuple[str, str, str]  # (fix sha, path in the fix's parent, introducing sha)

# Disagreement classes, in the order they are reported (and win ties).
WHITESPACE = "whitespace (blame -w vs plain blame)"
COMMENT_RULE = "comment/blank-line rule differs (_useless_line vs is_trivial_line)"
WS_SKIPPED = "whitespace-only change skipped by hunkwise"
MERGE = "merge attribution (line carried by a merge)"
RENAME = "rename (line came from another path)"
NO_ORIGIN = "hunkwise: no origin for the line"
NOT_TRACED = "hunkwise did not trace the line"
DIFF_DIFFERS = "the two diffs delete different lines"
PYDRILLER_FAILED = "PyDriller found nothing for the file (blame failed)"
OTHER = "other (hunkwise differs from plain blame)"
CLASSES = (
    WHITESPACE,
    COMMENT_RULE,
    WS_SKIPPED,
    MERGE,
    RENAME,
    NO_ORIGIN,
    NOT_TRACED,
    DIFF_DIFFERS,
    PYDRILLER_FAILED,
    OTHER,
)

UNTRACED = "untraced"  # a deleted line hunkwise has no trace for

_BLAME_HEADER = re.compile(r"^([0-9a-f]{40}) \d+ (\d+)")


@dataclass(frozen=True)
class BlameLine:
    sha: str
    filename: str


@dataclass
class Fix:
    """One chosen fix: its diff as hunkwise parses it, PyDriller's view, and the pairs."""

    sha: str
    index: int
    files: dict[str, FileDiff] = field(default_factory=dict)  # fix-parent path -> diff
    mods: dict[str, ModifiedFile] = field(default_factory=dict)  # fix-parent path -> mod
    ours: set[Pair] = field(default_factory=set)
    theirs: set[Pair] = field(default_factory=set)


@dataclass
class Disagreement:
    """A pair only one side has, classed by the lines behind it."""

    pair: Pair
    side: str  # "hunkwise" or "pydriller": the side that has the pair
    reason: str  # the most common class of its lines
    lines: Counter  # class -> how many of its lines
    samples: dict[str, tuple[int, str, str]]  # class -> (line, text, detail) of one line


class Repo:
    """Read-only git commands on the PyDriller clone, and blames cached per file."""

    def __init__(self, git_dir: Path):
        self.env = {**os.environ, **read_only_env(git_dir)}
        self.blames: dict[tuple[str, str, str], list[BlameLine] | None] = {}
        self.merges: dict[str, bool] = {}

    def run(self, *args: str) -> bytes:
        return subprocess.run(["git", *args], env=self.env, check=True, capture_output=True).stdout

    def diff(self, sha: str) -> list[FileDiff]:
        """The fix's first-parent diff, with the options and parser of hunkwise's walk."""
        out = self.run(
            *GIT_CONFIG, "diff-tree", "-r", "-p", "--no-commit-id", *DIFF_OPTIONS, f"{sha}^", sha
        )
        return parse_git_diff(out)

    def blame(self, sha: str, path: str, mode: str) -> list[BlameLine] | None:
        """``git blame [mode] <sha>^ -- path``, one entry per line (None if it fails)."""
        key = (sha, path, mode)
        if key not in self.blames:
            args = ["blame", "--line-porcelain", *([mode] if mode else []), f"{sha}^", "--", path]
            try:
                out = self.run(*args).decode("utf-8", "replace")
            except subprocess.CalledProcessError:
                self.blames[key] = None
                return None
            lines: list[BlameLine] = []
            commit = filename = ""
            for raw in out.split("\n"):
                if raw.startswith("\t"):
                    lines.append(BlameLine(commit, filename))
                    continue
                header = _BLAME_HEADER.match(raw)
                if header:
                    commit = header.group(1)
                elif raw.startswith("filename "):
                    filename = raw[len("filename ") :]
            self.blames[key] = lines
        return self.blames[key]

    def blamed(self, sha: str, path: str, line: int, mode: str) -> BlameLine | None:
        lines = self.blame(sha, path, mode)
        return lines[line - 1] if lines and 0 < line <= len(lines) else None

    def is_merge(self, sha: str) -> bool:
        if sha not in self.merges:
            parents = self.run("rev-list", "--parents", "-n1", sha).split()
            self.merges[sha] = len(parents) > 2
        return self.merges[sha]


def pydriller_key_to_parent_path(mod: ModifiedFile) -> tuple[str | None, str | None]:
    """(the key ``get_commits_last_modified_lines`` files this mod under, its parent path)."""
    if mod.change_type == ModificationType.ADD:
        return mod.new_path, None
    if mod.change_type in (ModificationType.RENAME, ModificationType.DELETE):
        key = mod.new_path if mod.change_type == ModificationType.RENAME else mod.old_path
        return key, mod.old_path
    return mod.new_path, mod.old_path


def considered(file: FileDiff) -> bool:
    """Whether hunkwise traces this file of a fix (before its content rules)."""
    return (
        file.status != "A"
        and not file.binary
        and not file.malformed
        and not file.submodule
        and filters.path_reason(file.path) is None
        and filters.path_reason(file.old_path) is None
    )


def progress(label: str, done: int, total: int) -> None:
    if done == total or done % 5 == 0:
        end = "\n" if done == total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=sys.stderr, flush=True)


class Comparison:
    """One run: the hunkwise walk, the sample, both sides' pairs and the disagreements."""

    def __init__(self, repo_path: Path, options: MineOptions, fixes: int, seed: int):
        self.repo_path = repo_path
        self.options = options
        self.wanted = fixes
        self.seed = seed
        self.seconds: dict[str, float] = {}

    def walk(self) -> History:
        started = time.perf_counter()
        history, self.facts = walk_history(self.repo_path, self.options)
        self.seconds["hunkwise_walk"] = time.perf_counter() - started
        self.index = {commit.sha: i for i, commit in enumerate(history.commits)}
        self.horizon = horizon_of(self.options, len(history.commits))
        return history

    def in_horizon(self, fix: Fix, sha: str) -> bool:
        intro = self.index.get(sha)
        return intro is not None and 0 < fix.index - intro <= self.horizon

    def choose(self, history: History) -> list[Fix]:
        traced = sorted({trace.fix for trace in history.traces}, key=self.index.__getitem__)
        self.traced_fixes = len(traced)
        chosen = random.Random(self.seed).sample(traced, min(self.wanted, len(traced)))
        return [Fix(sha, self.index[sha]) for sha in sorted(chosen, key=self.index.__getitem__)]

    def run(self, clone: Path) -> dict[str, Any]:
        history = self.walk()
        fixes = self.choose(history)
        self.git = Repo(clone)
        chosen = {fix.sha: fix for fix in fixes}
        self.traces: dict[tuple[str, str, int], str | None] = {}
        self.traced_lines: dict[tuple[str, str], list[int]] = defaultdict(list)
        for trace in history.traces:
            if trace.fix in chosen:
                self.traces[(trace.fix, trace.path, trace.line)] = trace.introduced_by
                self.traced_lines[(trace.fix, trace.path)].append(trace.line)
        for fix in fixes:
            fix.files = {f.old_path: f for f in self.git.diff(fix.sha) if considered(f)}
        self.excluded = {"hunkwise": set(), "pydriller": set()}
        for (sha, path, _), intro in self.traces.items():
            fix = chosen[sha]
            if intro is not None and self.in_horizon(fix, intro):
                target = fix.ours if path in fix.files else self.excluded["hunkwise"]
                target.add((sha, path, intro))
        self.pydriller(fixes, clone)
        ours = set().union(*(fix.ours for fix in fixes))
        theirs = set().union(*(fix.theirs for fix in fixes))
        both = ours & theirs
        started = time.perf_counter()
        disagreements = self.classify(fixes)
        self.seconds["classify"] = time.perf_counter() - started
        return self.summary(fixes, ours, theirs, both, disagreements)

    def pydriller(self, fixes: list[Fix], clone: Path) -> None:
        g = Git(str(clone))
        self.seconds["pydriller"] = 0.0
        for done, fix in enumerate(fixes, 1):
            commit = g.get_commit(fix.sha)
            started = time.perf_counter()
            found = g.get_commits_last_modified_lines(commit)
            self.seconds["pydriller"] += time.perf_counter() - started
            keys: dict[str, str] = {}
            for mod in commit.modified_files:
                key, parent_path = pydriller_key_to_parent_path(mod)
                if key is not None and parent_path is not None:
                    keys[key] = parent_path
                    fix.mods[parent_path] = mod
            for key, shas in found.items():
                path = keys.get(key)
                for sha in shas:
                    if not self.in_horizon(fix, sha):
                        continue
                    if path is not None and path in fix.files:
                        fix.theirs.add((fix.sha, path, sha))
                    else:
                        self.excluded["pydriller"].add((fix.sha, path or key, sha))
            progress("PyDriller", done, len(fixes))
        g.clear()

    # -- why the sides disagree ------------------------------------------------------------

    def classify(self, fixes: list[Fix]) -> list[Disagreement]:
        out: list[Disagreement] = []
        pending = [
            (fix, pair, side)
            for fix in fixes
            for side, pairs in (
                ("hunkwise", fix.ours - fix.theirs),
                ("pydriller", fix.theirs - fix.ours),
            )
            for pair in sorted(pairs)
        ]
        for done, (fix, pair, side) in enumerate(pending, 1):
            if side == "hunkwise":
                out.append(self.ours_only(fix, pair))
            else:
                out.append(self.theirs_only(fix, pair))
            progress("Classifying disagreements", done, len(pending))
        return out

    def deleted_texts(self, fix: Fix, path: str) -> dict[int, str]:
        return {n: t for hunk in fix.files[path].hunks for n, t in hunk.deleted}

    def pydriller_lines(self, fix: Fix, path: str) -> dict[int, str]:
        """Deleted lines PyDriller blames in this file (its diff, minus _useless_line)."""
        mod = fix.mods.get(path)
        if mod is None:
            return {}
        return {n: t for n, t in mod.diff_parsed["deleted"] if not Git._useless_line(t.strip())}

    def decide(self, pair: Pair, side: str, reasons: list[tuple]) -> Disagreement:
        """The pair's class: the most common among its lines (ties: the first class)."""
        counts = Counter(reason for reason, *_ in reasons)
        best = max(CLASSES, key=lambda c: (counts[c], -CLASSES.index(c)))
        samples: dict[str, tuple[int, str, str]] = {}
        for reason, line, text, detail in reasons:
            samples.setdefault(reason, (line, text, detail))
        return Disagreement(pair, side, best, counts, samples)

    def emulation(self, fix: Fix, path: str, line: int, plain: BlameLine, ours: str) -> str:
        """Why hunkwise's origin differs from plain ``git blame``'s."""
        first_parent = self.git.blamed(fix.sha, path, line, "--first-parent")
        merge_carried = first_parent is not None and first_parent.sha != plain.sha
        if merge_carried or self.git.is_merge(ours) or self.git.is_merge(plain.sha):
            return MERGE
        if plain.filename != path:
            return RENAME
        return OTHER

    def ours_only(self, fix: Fix, pair: Pair) -> Disagreement:
        """Why PyDriller does not blame any line of this file on hunkwise's commit."""
        sha, path, ours = pair
        texts = self.deleted_texts(fix, path)
        theirs_lines = self.pydriller_lines(fix, path)
        reasons = []
        for line in self.traced_lines[(sha, path)]:
            if self.traces[(sha, path, line)] != ours:
                continue
            text = texts.get(line, "")
            w = self.git.blamed(sha, path, line, "-w")
            plain = self.git.blamed(sha, path, line, "")
            detail = (
                f"hunkwise {ours[:10]}, blame -w {w.sha[:10] if w else None}, "
                f"blame {plain.sha[:10] if plain else None}"
            )
            if Git._useless_line(text.strip()):
                reason = COMMENT_RULE
            elif line not in theirs_lines:
                reason = DIFF_DIFFERS
            elif w is None:
                reason = PYDRILLER_FAILED
            elif w.sha != ours:
                # hunkwise follows blame -w; agreeing with plain blame instead means it
                # missed a whitespace-only change.
                same_as_plain = plain is not None and plain.sha == ours
                reason = WHITESPACE if same_as_plain else self.emulation(fix, path, line, w, ours)
            else:  # blame -w agrees with hunkwise, yet PyDriller reported nothing
                reason = PYDRILLER_FAILED
            reasons.append((reason, line, text, detail))
        return self.decide(pair, "hunkwise", reasons)

    def theirs_only(self, fix: Fix, pair: Pair) -> Disagreement:
        """Why hunkwise traces no line of this file to PyDriller's commit."""
        sha, path, theirs = pair
        file = fix.files[path]
        language = file.hunks[0].language if file.hunks else language_of(file.path)
        ours_deleted: dict[int, set[str]] = {}  # line -> whitespace-free lines its hunk adds
        for hunk in file.hunks:
            added = {whitespace_free(line[1:]) for line in hunk.lines if line[:1] == "+"}
            for line, _ in hunk.deleted:
                ours_deleted[line] = added
        reasons = []
        for line, text in self.pydriller_lines(fix, path).items():
            w = self.git.blamed(sha, path, line, "-w")
            if w is None or w.sha != theirs:
                continue
            plain = self.git.blamed(sha, path, line, "")
            ours = self.traces.get((sha, path, line), UNTRACED)
            detail = (
                f"blame -w {theirs[:10]}, blame {plain.sha[:10] if plain else None}, "
                f"hunkwise {ours[:10] if ours else None}"
            )
            if line not in ours_deleted:
                reason = DIFF_DIFFERS
            elif ours == UNTRACED:
                if filters.is_trivial_line(text, language):
                    reason = COMMENT_RULE
                elif whitespace_free(text) in ours_deleted[line]:
                    reason = WS_SKIPPED
                else:
                    reason = NOT_TRACED
            elif ours is None:
                reason = NO_ORIGIN
            elif plain is not None and plain.sha == ours:
                reason = WHITESPACE
            elif plain is not None and plain.sha == theirs:
                reason = self.emulation(fix, path, line, plain, ours)
            else:
                reason = OTHER
            reasons.append((reason, line, text, detail))
        if not reasons:  # PyDriller's blame -w disagrees with ours (should not happen)
            reasons.append((PYDRILLER_FAILED, 0, "", "no line reproduces PyDriller's pair"))
        return self.decide(pair, "pydriller", reasons)

    # -- report ----------------------------------------------------------------------------

    def summary(
        self,
        fixes: list[Fix],
        ours: set[Pair],
        theirs: set[Pair],
        both: set[Pair],
        disagreements: list[Disagreement],
    ) -> dict[str, Any]:
        pairs: Counter = Counter((d.side, d.reason) for d in disagreements)
        lines: Counter = Counter()
        examples: dict[tuple[str, str], tuple[Disagreement, int]] = {}
        for d in disagreements:
            for reason, n in d.lines.items():
                lines[(d.side, reason)] += n
                # Prefer an example from a pair the class decided.
                rank = 0 if reason == d.reason else 1
                known = examples.get((d.side, reason))
                if known is None or rank < known[1]:
                    examples[(d.side, reason)] = (d, rank)
        classes = []
        for side, reason in sorted(lines, key=lambda k: (k[0], -pairs[k], -lines[k])):
            d, _ = examples[(side, reason)]
            line, text, detail = d.samples[reason]
            classes.append(
                {
                    "only_in": side,
                    "class": reason,
                    "pairs": pairs[(side, reason)],
                    "lines": lines[(side, reason)],
                    "example": {
                        "fix": d.pair[0],
                        "path": d.pair[1],
                        "line": line,
                        "text": text.strip()[:120],
                        "introduced_by": d.pair[2],
                        "detail": detail,
                    },
                }
            )
        # Under the same line rules: a pair only one side has counts only where one of
        # its lines passes both sides' rules (not skipped as a comment, docstring or
        # whitespace-only change by either), so what is left measures the attribution.
        filtered = Counter(
            d.side for d in disagreements if set(d.lines) <= {COMMENT_RULE, WS_SKIPPED}
        )
        same_ours, same_theirs = (
            len(ours) - filtered["hunkwise"],
            len(theirs) - filtered["pydriller"],
        )
        return {
            "repo": str(self.repo_path),
            "head": self.facts.get("head"),
            "commits": len(self.index),
            "horizon_commits": self.horizon,
            "traced_fixes": self.traced_fixes,
            "fixes": len(fixes),
            "seed": self.seed,
            "pairs": {"hunkwise": len(ours), "pydriller": len(theirs), "both": len(both)},
            "excluded_by_file_rules": {side: len(p) for side, p in self.excluded.items()},
            "precision": round(len(both) / len(ours), 4) if ours else None,
            "recall": round(len(both) / len(theirs), 4) if theirs else None,
            "same_line_rules": {
                "pairs": {"hunkwise": same_ours, "pydriller": same_theirs, "both": len(both)},
                "precision": round(len(both) / same_ours, 4) if same_ours else None,
                "recall": round(len(both) / same_theirs, 4) if same_theirs else None,
            },
            "seconds": {
                "hunkwise_walk_all_fixes": round(self.seconds["hunkwise_walk"], 2),
                "pydriller_chosen_fixes": round(self.seconds["pydriller"], 2),
                "pydriller_per_fix": round(self.seconds["pydriller"] / max(1, len(fixes)), 3),
                "classify": round(self.seconds["classify"], 2),
            },
            "disagreements": classes,
        }


def print_summary(summary: dict[str, Any]) -> None:
    pairs = summary["pairs"]
    seconds = summary["seconds"]
    print(
        f"{summary['repo']} @ {str(summary['head'])[:12]}: {summary['commits']} commits, "
        f"horizon {summary['horizon_commits']} commits, "
        f"{summary['fixes']} of {summary['traced_fixes']} traced fixes (seed {summary['seed']})"
    )
    print(
        f"pairs (fix, path, introducing commit): hunkwise {pairs['hunkwise']}, "
        f"PyDriller {pairs['pydriller']}, both {pairs['both']}"
    )
    print(f"precision {summary['precision']}  recall {summary['recall']}")
    same = summary["same_line_rules"]
    print(
        f"under the same line rules (pairs only one side's comment/whitespace rule admits "
        f"set aside): hunkwise {same['pairs']['hunkwise']}, PyDriller "
        f"{same['pairs']['pydriller']}: precision {same['precision']}  recall {same['recall']}"
    )
    print(
        f"seconds: hunkwise walk (all {summary['traced_fixes']} fixes) "
        f"{seconds['hunkwise_walk_all_fixes']}, PyDriller ({summary['fixes']} fixes) "
        f"{seconds['pydriller_chosen_fixes']} ({seconds['pydriller_per_fix']} per fix), "
        f"classification {seconds['classify']}"
    )
    excluded = summary["excluded_by_file_rules"]
    print(
        f"left out by the file rules (not in the counts): hunkwise {excluded['hunkwise']}, "
        f"PyDriller {excluded['pydriller']}"
    )
    if summary["disagreements"]:
        print("disagreements (pairs only one side has, by their lines' most common class):")
    for entry in summary["disagreements"]:
        ex = entry["example"]
        print(
            f"  {entry['pairs']:5d} pairs {entry['lines']:5d} lines  "
            f"only {entry['only_in']}: {entry['class']}"
        )
        print(
            f"         e.g. {ex['fix'][:10]} {ex['path']}:{ex['line']} {ex['text']!r} ({ex['detail']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("--fixes", type=int, default=200, help="fix commits to compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon-commits", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    args = parser.parse_args()
    options = MineOptions(horizon_commits=args.horizon_commits)
    with tempfile.TemporaryDirectory(prefix="szz-agreement-") as tmp:
        clone = Path(tmp) / "repo.git"
        subprocess.run(
            ["git", "clone", "--bare", "--shared", "--quiet", str(args.repo.resolve()), str(clone)],
            check=True,
        )
        summary = Comparison(args.repo, options, args.fixes, args.seed).run(clone)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)


if __name__ == "__main__":
    main()
