"""``hunkwise mine``: a repository's history -> rnp / rcg / cr / edit records with
SZZ-style labels, time-based splits and ``stats.json``.

A hunk needed review (rnp = yes) when lines it added were later changed or deleted by a
fix commit within the horizon; it is "no" when its added lines outlived the horizon
untouched by fixes; younger hunks are censored (no label). See docs/mining.md.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache, cached_property
from pathlib import Path

from training.errors import HunkwiseError
from training.gitio.command import commit_order, has_commits, open_repository
from training.gitio.log import Commit, FileDiff, stream_commits
from training.hunks import Hunk
from training.mining import filters
from training.mining.dataset import dedupe, split_by_time, write_dataset
from training.mining.lineage import (
    EMPTY,
    FileLines,
    apply_hunks,
    origin_of,
    pass_to_parent,
    whitespace_free,
)
from training.mining.messages import clean_subject, is_fix, is_good_instruction, is_informative
from training.output_dirs import check_writable
from training.progress import progress_bar
from training.tasks import CR, EDIT, LABEL_NO, LABEL_YES, RCG, RNP, Record, RecordMeta, cr_input

DEFAULT_HORIZON_COMMITS = 100


def auto_horizon(commits: int) -> int:
    """The default horizon: 100 commits, less on short histories (a fifth of them, at least
    3) so that a young repository still gets labels."""
    return max(3, min(DEFAULT_HORIZON_COMMITS, commits // 5))


def horizon_of(options: MineOptions, commits: int) -> int:
    return options.horizon_commits or auto_horizon(commits)


@dataclass(frozen=True)
class MineOptions:
    rev: str = "HEAD"
    max_commits: int | None = None
    horizon_commits: int | None = None  # None: auto_horizon(commits), unless horizon_days
    horizon_days: float | None = None
    jobs: int = 1
    max_file_bytes: int = filters.MAX_FILE_BYTES
    max_hunk_lines: int = filters.MAX_HUNK_LINES


@dataclass
class Candidate:
    """A hunk that passed the filters: it may become records."""

    serial: int
    commit_index: int
    hunk: Hunk


@dataclass(frozen=True)
class FixTrace:
    """One line a fix commit changed, traced to the commit that introduced it."""

    fix: str
    path: str  # the path in the fix's parent
    line: int  # 1-based, in the fix's parent
    introduced_by: str | None


@dataclass
class History:
    """What one walk of the history found, before records are written."""

    commits: list[Commit] = field(default_factory=list)  # files dropped after the walk
    candidates: list[Candidate] = field(default_factory=list)
    hunk_commit: list[int] = field(default_factory=list)  # serial -> commit index
    fixes: dict[int, list[int]] = field(default_factory=dict)  # serial -> fix commit indexes
    fix_commits: set[int] = field(default_factory=set)  # indexes of non-merge fix commits
    traces: list[FixTrace] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    boundary: set[str] = field(default_factory=set)
    hunks_seen: int = 0  # hunks of non-merge commits in files the filters kept
    hunks_total: int = 0  # every hunk of non-merge commits

    @cached_property
    def newest_time(self) -> int:
        return max((commit.commit_time for commit in self.commits), default=0)


def utc_iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def _shallow_boundary(repo) -> set[str]:
    path = Path(repo.git_dir) / "shallow"
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


class _Walk:
    """Follows every file's lines through the history and records fixes and candidates."""

    def __init__(
        self, options: MineOptions, order: list[tuple[str, tuple[str, ...]]], boundary: set[str]
    ):
        self.options = options
        self.history = History(boundary=boundary)
        self.index = {sha: i for i, (sha, _) in enumerate(order)}
        self.children_left = Counter(p for _, parents in order for p in parents)
        self.states: dict[str, dict[str, FileLines]] = {}
        self.poisoned: dict[str, str] = {}  # path -> why its lines are no longer followed

    def parent_state(self, sha: str) -> dict[str, FileLines]:
        return self.states.get(sha, {})

    def release(self, parents: tuple[str, ...]) -> None:
        for parent in parents:
            self.children_left[parent] -= 1
            if self.children_left[parent] <= 0:
                self.states.pop(parent, None)

    def step(self, commit: Commit) -> None:
        history = self.history
        commit_index = len(history.commits)
        history.commits.append(commit)
        first = commit.parents[0] if commit.parents else None
        base = self.parent_state(first) if first else {}
        boundary = commit.sha in history.boundary
        recordable = not commit.is_merge and not boundary
        if recordable and is_fix(commit.message):
            history.fix_commits.add(commit_index)
            if first:
                self._trace_fix(commit, base)
        if recordable:
            history.hunks_total += sum(len(file.hunks) for file in commit.files)
        updates: dict[str, FileLines] = {}
        removals: set[str] = set()
        for file in commit.files:
            if file.status == "D":
                self.poisoned.pop(file.old_path, None)
            reason = self._file_reason(file)
            if reason is not None:
                if recordable:
                    history.skipped[reason] += 1
                removals.update((file.old_path, file.path))
                continue
            serials = self._serials(file, commit_index, boundary)
            old = base.get(file.old_path, EMPTY) if file.status != "A" else EMPTY
            new = apply_hunks(old, file.hunks, serials) if file.status != "D" else old
            if recordable:
                self._collect(file, commit_index, serials, new)
            if file.status in ("D", "R"):
                removals.add(file.old_path)
            if file.status == "D":
                continue
            for other in commit.parents[1:]:
                other_state = self.parent_state(other)
                theirs = other_state.get(file.path) or other_state.get(file.old_path)
                if theirs is not None and serials:
                    new = pass_to_parent(new, set(serials), theirs)
            updates[file.path] = new
        # The only child takes its parent's map over; others get a copy.
        state = base if first and self.children_left[first] <= 1 else dict(base)
        for path in removals:
            state.pop(path, None)
        state.update(updates)
        self.states[commit.sha] = state
        self.release(commit.parents)
        commit.files = []  # the hunks live on in candidates; free the rest

    def _file_reason(self, file: FileDiff) -> str | None:
        """Why a file's lines are neither followed nor learnt from in this commit."""
        reason = filters.diff_reason(file)
        if reason is not None:
            return reason
        reason = filters.path_reason(file.path) or self.poisoned.get(file.path)
        if reason is None and file.size > self.options.max_file_bytes:
            reason = self.poisoned[file.path] = filters.TOO_LARGE
        return reason

    def _serials(self, file: FileDiff, commit_index: int, boundary: bool) -> list[int | None]:
        """A serial per hunk (None on a shallow boundary, whose origins are unknown)."""
        if boundary:
            return [None] * len(file.hunks)
        table = self.history.hunk_commit
        first = len(table)
        table.extend([commit_index] * len(file.hunks))
        return list(range(first, len(table)))

    def _collect(
        self, file: FileDiff, commit_index: int, serials: list[int | None], revision: FileLines
    ) -> None:
        """Keep the file's hunks as candidates unless its content in this revision says
        it is not worth learning from."""
        history = self.history
        history.hunks_seen += len(file.hunks)
        reason = None
        if file.undecodable:
            reason = filters.UNDECODABLE
        else:
            added = [line[1:] for hunk in file.hunks for line in hunk.lines if line[:1] == "+"]
            head = [text for text in revision.texts[:10] if text is not None]
            reason = filters.content_reason(added[:200], head)
            if reason == filters.MINIFIED and file.status == "A":
                self.poisoned[file.path] = reason
        if reason is not None:
            history.skipped[reason] += 1
            return
        for hunk, serial in zip(file.hunks, serials, strict=True):
            if len(hunk.lines) > self.options.max_hunk_lines:
                history.skipped[filters.HUNK_TOO_LONG] += 1
                continue
            history.candidates.append(Candidate(serial, commit_index, hunk))

    def _trace_fix(self, commit: Commit, parent: dict[str, FileLines]) -> None:
        history = self.history
        fix_index = len(history.commits) - 1
        for file in commit.files:
            if file.status == "A" or file.binary or file.submodule or file.malformed:
                continue
            state = parent.get(file.old_path)
            language = file.hunks[0].language if file.hunks else None
            for hunk in file.hunks:
                added = {whitespace_free(line[1:]) for line in hunk.lines if line[:1] == "+"}
                for number, text in hunk.deleted:
                    if filters.is_trivial_line(text, language):
                        continue
                    if whitespace_free(text) in added:  # a whitespace-only change
                        continue
                    serial = origin_of(state, number)
                    introduced = None
                    if serial is not None:
                        introduced = history.commits[history.hunk_commit[serial]].sha
                        fixes = history.fixes.setdefault(serial, [])
                        if not fixes or fixes[-1] != fix_index:
                            fixes.append(fix_index)
                    history.traces.append(FixTrace(commit.sha, file.old_path, number, introduced))


def walk_history(repo_path: Path, options: MineOptions, console=None) -> tuple[History, dict]:
    """Stream the history once and follow every line; returns what was found and facts
    about the walk (head, shallow, counts)."""
    repo = open_repository(repo_path)
    facts: dict = {"bare": repo.bare, "shallow": False, "shallow_boundary_commits": 0}
    if not has_commits(repo, options.rev):
        if options.rev != "HEAD":
            raise HunkwiseError(f"{options.rev!r} is not a commit in {repo_path}")
        facts["head"] = None
        return History(), facts
    order = commit_order(repo, options.rev, options.max_commits)
    boundary = _shallow_boundary(repo)
    facts["shallow"] = bool(boundary)
    facts["head"] = order[-1][0] if order else None
    walk = _Walk(options, order, boundary & {sha for sha, _ in order})
    facts["shallow_boundary_commits"] = len(walk.history.boundary)
    with progress_bar(console, "Mining history", len(order)) as advance:
        shas = [sha for sha, _ in order]
        for commit in stream_commits(repo, options.rev, options.max_commits, options.jobs, shas):
            walk.step(commit)
            advance()
    repo.close()
    return walk.history, facts


def _label(
    history: History, candidate: Candidate, options: MineOptions
) -> tuple[str | None, int | None]:
    """("yes" | "no" | None for censored, the fix commit index for "yes")."""
    commits = history.commits
    index = candidate.commit_index
    last = len(commits) - 1
    if options.horizon_days is not None:
        limit = options.horizon_days * 86400
        start = commits[index].commit_time
        for fix in history.fixes.get(candidate.serial, []):
            if 0 <= commits[fix].commit_time - start <= limit:
                return LABEL_YES, fix
        return (LABEL_NO, None) if history.newest_time - start >= limit else (None, None)
    horizon = horizon_of(options, len(commits))
    for fix in history.fixes.get(candidate.serial, []):
        if 0 < fix - index <= horizon:
            return LABEL_YES, fix
    return (LABEL_NO, None) if last - index >= horizon else (None, None)


def build_records(
    history: History, repo_name: str, options: MineOptions
) -> tuple[dict[str, list[Record]], Counter, Counter]:
    """Records per task, in history order, label counts, and per task the records not made
    because their message was uninformative."""
    records: dict[str, list[Record]] = {RNP: [], RCG: [], CR: [], EDIT: []}
    labels: Counter = Counter()
    commits = history.commits

    @cache
    def subject(index: int) -> str:
        return clean_subject(commits[index].message)

    @cache
    def informative(index: int) -> bool:
        return is_informative(subject(index))

    @cache
    def instruction(index: int) -> bool:
        return is_good_instruction(subject(index))

    # Records not made because the comment or instruction would say nothing specific.
    uninformative: Counter = Counter()

    for candidate in history.candidates:
        hunk = candidate.hunk
        commit = commits[candidate.commit_index]
        meta = RecordMeta(
            source="history",
            repo=repo_name,
            commit=commit.sha,
            path=hunk.path,
            lang=hunk.language,
            time=utc_iso(commit.commit_time),
        )
        label, fix = _label(history, candidate, options)
        labels[label or "censored"] += 1
        if label is not None:
            rnp_meta = meta
            if fix is not None:
                rnp_meta = RecordMeta(
                    **{
                        **meta.__dict__,
                        "fix_commit": commits[fix].sha,
                        "fix_subject": subject(fix) or None,
                        "fix_time": utc_iso(commits[fix].commit_time),
                    }
                )
            records[RNP].append(Record.make(RNP, hunk.text, label, rnp_meta))
            if label == LABEL_YES:
                if informative(fix):
                    records[RCG].append(Record.make(RCG, hunk.text, subject(fix), rnp_meta))
                else:
                    uninformative[RCG] += 1
        message = subject(candidate.commit_index)
        useful = informative(candidate.commit_index)
        if candidate.commit_index in history.fix_commits:
            if useful:
                cr_meta = RecordMeta(**{**meta.__dict__, "fix_commit": commit.sha})
                records[CR].append(
                    Record.make(CR, cr_input(message, hunk.old_text), hunk.new_text, cr_meta)
                )
            else:
                uninformative[CR] += 1
        if not useful:
            uninformative[EDIT] += 1
        elif instruction(candidate.commit_index):
            records[EDIT].append(
                Record.make(EDIT, hunk.old_text, hunk.new_text, meta, instruction=message)
            )
    return records, labels, uninformative


def repo_label(path: Path) -> str:
    """A short name for a repository path (its directory name, without ``.git``)."""
    name = path.resolve().name
    return name[:-4] if name.endswith(".git") and len(name) > 4 else name


def check_output_dir(repo_path: Path, out: Path) -> None:
    """Refuse to write into a repository's git directory, or where nothing can be written
    (checked before the history is walked)."""
    check_writable(out, "dataset directory")
    repo = open_repository(repo_path)
    git_dir = Path(repo.git_dir).resolve()
    repo.close()
    target = out.resolve()
    if target == git_dir or git_dir in target.parents:
        raise HunkwiseError(
            f"--out {out} is inside the repository's git directory; choose a directory outside it"
        )


def mine_repository(repo_path: Path, out: Path, options: MineOptions, console=None) -> dict:
    """Mine ``repo_path`` into ``out``; returns the stats written to ``out/stats.json``."""
    repo_path = Path(repo_path)
    out = Path(out)
    check_output_dir(repo_path, out)
    started = time.perf_counter()
    history, facts = walk_history(repo_path, options, console)
    walked = time.perf_counter()
    name = repo_label(repo_path)
    records, labels, uninformative = build_records(history, name, options)
    task_splits = {}
    duplicates = {}
    for task, task_records in records.items():
        kept, dropped = dedupe(task_records)
        duplicates[task] = dropped
        task_splits[task] = split_by_time(kept)
    commits = history.commits
    stats = {
        "repo": name,
        "path": str(repo_path.resolve()),
        "rev": options.rev,
        "head": facts.get("head"),
        "bare": facts.get("bare"),
        "shallow": facts.get("shallow"),
        "shallow_boundary_commits": facts.get("shallow_boundary_commits", 0),
        "commits": len(commits),
        "merge_commits": sum(1 for c in commits if c.is_merge),
        "fix_commits": len(history.fix_commits),
        "hunks_total": history.hunks_total,
        "hunks": history.hunks_seen,
        "candidate_hunks": len(history.candidates),
        "fixed_lines_traced": len(history.traces),
        "rnp_labels": {key: labels.get(key, 0) for key in (LABEL_YES, LABEL_NO, "censored")},
        "horizon": (
            {"days": options.horizon_days}
            if options.horizon_days is not None
            else {"commits": horizon_of(options, len(commits))}
        ),
        "skipped": {
            reason: history.skipped[reason] for reason in filters.REASONS if history.skipped[reason]
        },
        "duplicates_dropped": duplicates,
        "uninformative_messages": {task: uninformative[task] for task in (RCG, CR, EDIT)},
        "records": {
            task: len(task_records) - duplicates[task] for task, task_records in records.items()
        },
    }
    if facts.get("shallow"):
        stats["note"] = (
            "shallow clone: lines older than the boundary have no known origin; "
            "labels only where history allows"
        )
    if not commits:
        stats["note"] = "no commits: nothing to mine"
    stats["seconds"] = {
        "walk": round(walked - started, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    return write_dataset(out, task_splits, stats)


def content_digest(path: Path) -> str:
    """A digest of every file under ``path`` (names, modes and bytes); used to prove that
    mining leaves a repository untouched."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = Path(root, name)
            digest.update(str(full.relative_to(path)).encode("utf-8", "surrogateescape"))
            if full.is_symlink():
                digest.update(os.readlink(full).encode("utf-8", "surrogateescape"))
                continue
            digest.update(oct(full.stat().st_mode).encode())
            digest.update(full.read_bytes())
    return digest.hexdigest()
