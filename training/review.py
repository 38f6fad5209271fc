"""The review rule, shared by ``hunkwise review`` and the language server: which hunks are
reviewable (the miner's file filters), the review-necessity gate, what a finding says and
where it points, and what to say when a bundle cannot score; the git diffs and patches
``hunkwise review`` reads; and the text, JSON and SARIF renderings of findings."""

from __future__ import annotations

import codecs
import json
import os
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from training import __version__
from training.config import excluded
from training.errors import HunkwiseError
from training.evidence import Evidence
from training.gitio.command import (
    commit_range,
    empty_tree,
    head_or_empty_tree,
    merge_base,
    open_repository_containing,
    resolve_commit,
    run_git,
    run_git_text,
)
from training.gitio.log import DIFF_OPTIONS, FileDiff, parse_git_diff
from training.gitio.patch import DiffParseError, PatchFile, parse_diff_files
from training.hunks import Hunk
from training.mining import filters
from training.suppressions import ignore_marker
from training.tasks import RCG, RNP, RULE_ID, TOOL_NAME

if TYPE_CHECKING:
    from training.bundle import Manifest
    from training.engine import Engine

#: The SARIF schema and version of `render_sarif` (the rule id and tool name: training.tasks).
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
#: How many of a file's first lines are searched for a generated-file marker (as mining).
HEAD_LINES = 10


# -- what is reviewable ------------------------------------------------------------------


@dataclass(frozen=True)
class FileChange:
    """One file's hunks offered for review, with what the file filters read besides them."""

    path: str
    hunks: tuple[Hunk, ...]
    #: the first lines of the file as it is after the change (as it was, for a deletion)
    head_lines: tuple[str, ...] = ()
    binary: bool = False
    submodule: bool = False
    malformed: bool = False
    undecodable: bool = False
    #: bytes of the diff body; None: counted from the hunks
    size: int | None = None
    #: the file's lines after the change when known whole (the editor's buffer), where a
    #: ``hunkwise: ignore`` above a hunk is looked for; else its context lines and
    #: ``head_lines``
    new_lines: tuple[str, ...] = ()


#: The skip reason of a file the user's exclude globs leave out.
EXCLUDED = "excluded"
#: The skip reason of a hunk a ``hunkwise: ignore`` comment silences (training.suppressions).
SUPPRESSED = "suppressed"
#: The skip reason of a hunk dismissed before (``hunkwise dismiss``, the editor's Dismiss).
DISMISSED = "dismissed"
#: The reasons a user chose, not training: counted after the filters'.
_USER_REASONS = (EXCLUDED, SUPPRESSED, DISMISSED)
_SKIP_WORDS = {
    filters.BINARY: "a binary file",
    filters.MALFORMED: "a diff that does not parse",
    filters.SUBMODULE: "a submodule",
    filters.VENDORED: "vendored code",
    filters.LOCKFILE: "a lockfile",
    filters.MINIFIED: "minified code",
    filters.GENERATED: "a generated file",
    filters.TOO_LARGE: f"a change of over {filters.MAX_FILE_BYTES} bytes",
    filters.UNDECODABLE: "not UTF-8 text",
    filters.HUNK_TOO_LONG: f"a hunk of over {filters.MAX_HUNK_LINES} lines",
    EXCLUDED: "excluded by the exclude globs (hunkwise.toml, --exclude or the editor's setting)",
    SUPPRESSED: "suppressed by a `hunkwise: ignore` comment",
    DISMISSED: "dismissed before (`hunkwise review --show-dismissed` shows it)",
}


@dataclass(frozen=True)
class Skip:
    """A file (``hunk`` None) or one hunk of it that is not reviewed, and why: a reason of
    ``training.mining.filters``, the same that keeps it out of the training data."""

    path: str
    reason: str
    hunk: Hunk | None = None

    @property
    def description(self) -> str:
        """The reason in words, for a log line or a message."""
        if self.reason in _USER_REASONS:
            return _SKIP_WORDS[self.reason]
        return f"{_SKIP_WORDS[self.reason]} (training skips these too)"

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "reason": self.reason,
            "hunk_id": self.hunk.id if self.hunk is not None else None,
        }


@dataclass(frozen=True)
class Reviewable:
    """The hunks to score, in diff order, and the files and hunks the filters left out."""

    hunks: list[Hunk]
    skipped: list[Skip]

    def counts(self) -> dict[str, int]:
        """Skipped files and hunks by reason, in the order mining checks them (excluded,
        suppressed and dismissed ones last)."""
        found = Counter(skip.reason for skip in self.skipped)
        order = (*filters.REASONS, *_USER_REASONS)
        return {reason: found[reason] for reason in order if found[reason]}

    def excluding(self, globs: Sequence[str]) -> Reviewable:
        """Without the hunks of files the ``exclude`` globs match (counted as skipped)."""
        if not globs:
            return self
        kept = [hunk for hunk in self.hunks if not excluded(hunk.path, globs)]
        left_out = sorted({h.path for h in self.hunks if excluded(h.path, globs)})
        return Reviewable(kept, [*self.skipped, *(Skip(path, EXCLUDED) for path in left_out)])

    def dismissing(self, dismissed: Collection[str]) -> Reviewable:
        """Without the hunks whose id is in ``dismissed`` (a
        ``training.suppressions.DismissalStore``'s ids; counted as skipped)."""
        if not dismissed:
            return self
        gone = [Skip(h.path, DISMISSED, h) for h in self.hunks if h.id in dismissed]
        if not gone:
            return self
        kept = [hunk for hunk in self.hunks if hunk.id not in dismissed]
        return Reviewable(kept, [*self.skipped, *gone])


def path_skip(path: str) -> Skip | None:
    """Why a file's path alone keeps it out of review (vendored, a lockfile, a minified or
    generated name), or None: known before any diff is computed."""
    reason = filters.path_reason(path)
    return None if reason is None else Skip(path, reason)


def reviewable(files: Iterable[FileChange]) -> Reviewable:
    """Apply mining's filters to the files of a review: a file whose path or content keeps
    it out of the training data (binary, vendored, lockfile, minified, generated ...) is
    not scored either, nor is a hunk longer than training allows, nor one a ``hunkwise:
    ignore`` comment suppresses (:func:`training.suppressions.ignore_marker`)."""
    hunks: list[Hunk] = []
    skipped: list[Skip] = []
    for file in files:
        reason = _file_reason(file)
        if reason is not None:
            skipped.append(Skip(file.path, reason))
            continue
        for hunk in file.hunks:
            if len(hunk.lines) > filters.MAX_HUNK_LINES:
                skipped.append(Skip(file.path, filters.HUNK_TOO_LONG, hunk))
            elif ignore_marker(hunk, file.new_lines or file.head_lines):
                skipped.append(Skip(file.path, SUPPRESSED, hunk))
            else:
                hunks.append(hunk)
    return Reviewable(hunks, skipped)


def _file_reason(file: FileChange) -> str | None:
    """The miner's checks, in its order (training.mining.miner: _file_reason, _collect)."""
    reason = filters.diff_reason(file)
    if reason is not None:
        return reason
    if not file.hunks:  # a rename or a mode change: nothing to review, nothing to count
        return None
    skip = path_skip(file.path)
    if skip is not None:
        return skip.reason
    size = file.size
    if size is None:
        size = sum(len(hunk.text.encode("utf-8", errors="replace")) + 1 for hunk in file.hunks)
    if size > filters.MAX_FILE_BYTES:
        return filters.TOO_LARGE
    if file.undecodable:
        return filters.UNDECODABLE
    added = [line[1:] for hunk in file.hunks for line in hunk.lines if line[:1] == "+"]
    return filters.content_reason(added[:200], list(file.head_lines[:HEAD_LINES]))


# -- the gate, and what a finding says ---------------------------------------------------


def is_flagged(probability: float, threshold: float) -> bool:
    """The review-necessity gate: a hunk is flagged when its served probability is at
    least the threshold."""
    return probability >= threshold


def review_threshold(setting: float | None, bundle_default: float) -> float:
    """The threshold a review uses: the user's when set, else the bundle's own
    (``Engine.default_threshold``: chosen on its valid split, 0.5 for older bundles)."""
    return bundle_default if setting is None else setting


def finding_message(
    probability: float, comment: str | None, evidence: Sequence[Evidence] = ()
) -> str:
    """What a finding says: its review comment; without one (no rcg adapter, or an empty
    comment) the fix subject of the most similar past change that was fixed, marked as
    coming from history; else the probability message (also while the comment is
    pending and with comments off)."""
    if comment:
        return comment
    best = max(evidence, key=lambda e: e.similarity, default=None)
    if best is not None and best.fix_subject:
        source = f"fixed by {best.fix_commit[:7]}" if best.fix_commit else f"{best.source} review"
        return (
            f"From history: {best.fix_subject} ({source} in a change like this, "
            f"p={format_probability(probability)})"
        )
    return f"This change may need review (p={format_probability(probability)})"


def finding_text(probability: float, comment: str | None, evidence: Sequence[Evidence] = ()) -> str:
    """The one line a finding says where a person reads it, the same in ``hunkwise
    review``'s text output and in the editor's diagnostic: :func:`finding_message` on one
    line, and a review comment followed by its probability."""
    message = _one_line(finding_message(probability, comment, evidence))
    return f"{message} (p={format_probability(probability)})" if comment else message


def scoring_problem(bundle: Path, manifest: Manifest) -> str | None:
    """None when the bundle can score hunks (it has an rnp adapter); else
    :func:`unscorable_message`."""
    return None if RNP in manifest.tasks else unscorable_message(bundle, manifest)


def unscorable_message(bundle: Path, manifest: Manifest | None) -> str:
    """One sentence for a bundle without an rnp adapter: why it cannot score and what to do.
    Such a bundle comes from a history with no labelled fixes yet (the trainer skips rnp
    and records why in ``training.skipped_tasks``; ``manifest`` None: not known)."""
    training = manifest.training if manifest is not None else {}
    skipped = training.get("skipped_tasks") if isinstance(training, dict) else None
    reason = skipped.get(RNP) if isinstance(skipped, dict) else None
    advice = (
        "train on a longer history (`hunkwise train-from-repo` with more commits) or import "
        "labelled reviews (`hunkwise import codereviewer ...`)"
    )
    if isinstance(reason, str) and reason.strip():
        return (
            "this history has no labelled fixes yet, so hunkwise cannot score hunks (the "
            f"bundle at {bundle} has no rnp adapter; training skipped it: {reason.strip()}): "
            f"{advice}"
        )
    return (
        f"the bundle at {bundle} has no rnp adapter, so hunkwise cannot score hunks: "
        f"{advice}, with rnp among the tasks trained"
    )


@dataclass(frozen=True)
class Finding:
    """A hunk the review-necessity gate flagged.

    Lines are 1-based on the new side: the span of the hunk's added lines, or for a pure
    deletion one line at the deletion point (see :func:`finding_lines`).
    """

    path: str
    start_line: int
    end_line: int
    probability: float
    comment: str | None
    hunk_id: str
    hunk_text: str
    #: The past changes most like this hunk that were later fixed, newest first.
    evidence: tuple[Evidence, ...] = ()

    @property
    def message(self) -> str:
        return finding_message(self.probability, self.comment, self.evidence)

    @property
    def text(self) -> str:
        """What the text output and the editor's diagnostic say (:func:`finding_text`)."""
        return finding_text(self.probability, self.comment, self.evidence)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["message"] = self.message
        return data


def review_hunks(
    engine: Engine, hunks: Sequence[Hunk], threshold: float | None = None, comments: bool = True
) -> list[Finding]:
    """Score every hunk in one batched call; hunks scoring at least ``threshold`` (None: the
    bundle's) become findings (in input order), with a generated comment each when
    ``comments`` is on."""
    if not hunks:
        return []
    return findings_for(engine, hunks, engine.score(hunks), threshold, comments)


def findings_for(
    engine: Engine,
    hunks: Sequence[Hunk],
    probabilities: Sequence[float],
    threshold: float | None = None,
    comments: bool = True,
) -> list[Finding]:
    """Findings for already scored hunks: those at or over ``threshold`` (None: the
    bundle's), commented, each with its evidence (the past fixed changes most like it,
    from the bundle's index). Without an rcg adapter (a history with no labelled fixes has
    no comments to learn) a finding's message is its best evidence's fix subject, or the
    probability message."""
    cut = review_threshold(threshold, engine.default_threshold)
    flagged = [
        (hunk, p) for hunk, p in zip(hunks, probabilities, strict=True) if is_flagged(p, cut)
    ]
    texts: list[str | None] = [None] * len(flagged)
    found: list[list[Evidence]] = [[] for _ in flagged]
    if flagged:
        if comments and engine.has_task(RCG):
            texts = list(engine.comment([hunk for hunk, _ in flagged]))
        # Cheap (a sparse lookup), so there even without comments.
        found = engine.evidence([hunk for hunk, _ in flagged])
    findings = []
    for (hunk, p), text, evidence in zip(flagged, texts, found, strict=True):
        start, end = finding_lines(hunk)
        findings.append(
            Finding(
                path=hunk.path,
                start_line=start,
                end_line=end,
                probability=p,
                comment=text or None,
                hunk_id=hunk.id,
                hunk_text=hunk.text,
                evidence=tuple(evidence),
            )
        )
    return findings


def finding_lines(hunk: Hunk) -> tuple[int, int]:
    """(first, last) new-side line a finding about ``hunk`` points at: its added lines, or
    for a pure deletion one line, the deletion point (the editor's zero-width range sits at
    the start of that line)."""
    added = hunk.added
    if added:
        return added[0][0], added[-1][0]
    # A pure deletion: the line now standing where the deleted lines were, or, when the
    # deletion ends the hunk's new side (end of file, or zero context), the line before it.
    if hunk.new_len == 0:  # "+N,0": N is the line before the deletion (0: none)
        line = max(hunk.new_start, 1)
        return line, line
    line = hunk.new_start
    for body_line in hunk.lines:
        if body_line[:1] == "-":
            break
        if body_line[:1] == " ":
            line += 1
    line = min(line, hunk.new_start + hunk.new_len - 1)
    return line, line


# -- diffs -------------------------------------------------------------------------------


def hunks_for(
    repo: Path,
    spec: str | None = None,
    staged: bool = False,
    base: str | None = None,
    worktree_base: str = "HEAD",
) -> Reviewable:
    """The hunks to review in ``repo``, and what the filters skipped (:func:`reviewable`).

    ``spec`` is a revision (that commit against its first parent; a root commit against the
    empty tree) or a range, as ``git diff`` reads them (an omitted end is HEAD):

    - ``A...B``: the changes on B since it forked from A (from their merge base to B), what
      a pull request of B into A shows. The way to review a branch.
    - ``A..B``: B's tree against A's. When A has moved on since B forked from it, this also
      holds A's own later changes, reversed (:func:`range_note` says so in one line).

    ``base`` reviews the checked-out branch: HEAD's committed changes since it forked from
    ``base`` (``base...HEAD``, as ``git diff origin/main...HEAD``; uncommitted changes are
    not included). ``staged`` reviews the index against HEAD; none of these reviews the
    working tree's uncommitted changes to tracked files against ``worktree_base`` (the
    ``diffBase`` setting: HEAD, ``INDEX`` or ``:`` for the staged version, or a revision).
    Reads the repository, never writes to it.
    """
    given = [
        name
        for name, value in (("a revision (or range)", spec), ("--base", base), ("--staged", staged))
        if value not in (None, False)
    ]
    if len(given) > 1:
        raise HunkwiseError(f"give either {given[0]} or {given[1]}, not both")
    git_repo = open_repository_containing(repo)
    # Plumbing only: porcelain `git diff` refreshes the index (a write into the user's
    # repository) even with GIT_OPTIONAL_LOCKS=0. `new_side` names the version the diff
    # leads to, whose first lines the generated-file filter reads (None: the work tree).
    new_side: str | None
    if staged:
        command, new_side = ["diff-index", "--cached", head_or_empty_tree(git_repo)], ""
    elif base is not None:
        left, right = _branch_since(git_repo, base)
        command, new_side = ["diff-tree", "-r", left, right], right
    elif spec is None and worktree_base.upper() in ("INDEX", ":"):
        command, new_side = ["diff-files"], None
    elif spec is None:
        against = (
            head_or_empty_tree(git_repo)
            if worktree_base == "HEAD"
            else resolve_commit(git_repo, worktree_base)
        )
        command, new_side = ["diff-index", against], None
    elif ".." in spec:
        left, right = commit_range(git_repo, spec)
        command, new_side = ["diff-tree", "-r", left, right], right
    else:
        commit = resolve_commit(git_repo, spec)
        parents = run_git_text(git_repo, "rev-list", "--parents", "-n", "1", commit).split()
        parent = parents[1] if len(parents) > 1 else empty_tree(git_repo)
        command, new_side = ["diff-tree", "-r", parent, commit], commit
    # Mining's fixed options and parser, so a review sees hunks exactly as training did.
    data = run_git(git_repo, command[0], "-p", *DIFF_OPTIONS, *command[1:], "--")
    return reviewable(_file_change(git_repo, file, new_side) for file in parse_git_diff(data))


def range_note(repo: Path, spec: str | None) -> str | None:
    """One line for a two-dot range ``A..B`` whose A is not an ancestor of B: that diff also
    holds A's own changes since B forked from it, reversed, and ``A...B`` is what reviews
    B's changes alone. None for anything else: a revision, an ``A...B``, an ``A..B`` along
    one line of history, or two histories without a common commit (no merge base to
    suggest). Raises what :func:`hunks_for` raises for a revision that names nothing."""
    if spec is None or ".." not in spec or "..." in spec:
        return None
    git_repo = open_repository_containing(repo)
    left, right = commit_range(git_repo, spec)
    try:
        fork = run_git_text(git_repo, "merge-base", left, right).strip()
    except HunkwiseError:
        return None
    if fork == left:
        return None
    ahead = int(run_git_text(git_repo, "rev-list", "--count", f"{right}..{left}").strip())
    a, _, b = spec.partition("..")
    a, b = a or "HEAD", b or "HEAD"
    commits = "1 commit" if ahead == 1 else f"{ahead} commits"
    also = f" (or --base {a})" if right == head_or_empty_tree(git_repo) else ""
    return (
        f"{a} has {commits} that {b} lacks, so {a}..{b} also shows those changes, reversed; "
        f"to review only what {b} changed since it forked from {a}, use {a}...{b}{also}"
    )


def hunks_from_patch(text: str | bytes, root: Path | None = None) -> Reviewable:
    """The hunks to review in a unified diff, and what the filters skipped, as
    :func:`hunks_for` gives them for a repository: for a patch that does not come from this
    repository's git (``gh pr diff 12``, a file, ``diff -u`` of two files; with or without
    ``diff --git`` headers; CRLF line ends, a byte-order mark and bytes, read as UTF-8,
    tolerated). Parsed by :func:`training.gitio.patch.parse_diff_files`.

    The generated-file filter reads a file's first lines: an added or deleted file's are in
    its one hunk; for any other, they are read from the file at ``root`` (the repository
    the patch applies to) when it is there, else from the first hunk when it starts at the
    top of the file; else none are known. A patch that does not parse raises a
    HunkwiseError naming the line; an empty patch has nothing to review. Reads no git.
    """
    text = _patch_text(text)
    try:
        files = parse_diff_files(text)
    except DiffParseError as error:
        raise HunkwiseError(
            f"the patch does not parse at {error}; give a unified diff as `git diff` or "
            "`diff -u` prints it"
        ) from None
    if not files and text.strip():
        raise HunkwiseError(
            "no file changes found in the patch: give a unified diff as `git diff` or "
            "`diff -u` prints it (lines `--- a/x`, `+++ b/x`, `@@ -1 +1 @@` ...)"
        )
    return reviewable(_patch_change(file, root) for file in files)


def _patch_text(data: str | bytes) -> str:
    """A patch as text: bytes decoded as UTF-8, invalid bytes kept as surrogates for the
    undecodable filter (UTF-16 with a byte-order mark, as Windows PowerShell saves a
    redirected `gh pr diff`, decoded as such); a byte-order mark dropped."""
    if isinstance(data, bytes):
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            data = data.decode("utf-16", errors="replace")
        else:
            data = data.decode("utf-8", errors="surrogateescape")
    return data.removeprefix("\ufeff")


def _printable(name: str | None) -> str | None:
    """A path as mining decodes it: bytes that are not UTF-8 replaced (they would not print)."""
    if name is None:
        return None
    return name.encode("utf-8", "surrogatepass").decode("utf-8", errors="replace")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate: a byte of the patch that was not UTF-8
        return False
    return True


def _patch_change(file: PatchFile, root: Path | None) -> FileChange:
    path, old_path = _printable(file.path), _printable(file.old_path)
    hunks = file.hunks
    if (path, old_path) != (file.path, file.old_path):
        hunks = tuple(replace(hunk, path=path, old_path=old_path) for hunk in hunks)
    head: list[str] = []
    if hunks and path_skip(path) is None:
        if file.status in ("A", "D"):
            head = _whole_file_head(file.status, hunks)
        elif (source := _repository_file(root, path)) is not None:
            head = _file_head(source)
        elif hunks[0].new_start <= 1:
            head = [line[1:] for line in hunks[0].lines if line[:1] in (" ", "+")][:HEAD_LINES]
    return FileChange(
        path=path,
        hunks=hunks,
        head_lines=tuple(head),
        binary=file.binary,
        submodule=file.submodule,
        undecodable=not all(_is_utf8(hunk.text) for hunk in hunks),
    )


def _repository_file(root: Path | None, path: str) -> Path | None:
    """The file ``path`` names inside ``root``, when there is one (a patch's path may point
    anywhere: outside the repository is not read)."""
    if root is None or not path:
        return None
    try:
        top = Path(root).resolve()
        target = (top / path).resolve()
        return target if target.is_relative_to(top) and target.is_file() else None
    except (OSError, ValueError):  # a NUL in the path, a symlink loop
        return None


def _file_change(git_repo, file: FileDiff, new_side: str | None) -> FileChange:
    head: tuple[str, ...] = ()
    if file.hunks and path_skip(file.path) is None:
        head = tuple(_head_lines(git_repo, file, new_side))
    return FileChange(
        path=file.path,
        hunks=tuple(file.hunks),
        head_lines=head,
        binary=file.binary,
        submodule=file.submodule,
        malformed=file.malformed,
        undecodable=file.undecodable,
        size=file.size,
    )


def _head_lines(git_repo, file: FileDiff, new_side: str | None) -> list[str]:
    """The first lines of the file after the change (before it, for a deleted file), as
    mining reads them."""
    if file.status in ("A", "D"):
        return _whole_file_head(file.status, file.hunks)
    if new_side is None:
        return _file_head(Path(git_repo.working_tree_dir) / file.path)
    if "\n" in file.path:
        return []  # cat-file --batch reads one object name per line
    try:
        data = git_repo.git.get_object_data(f"{new_side}:{file.path}")[3]
    except (OSError, ValueError):
        return []  # gone since the diff was read: nothing to search
    return data.decode("utf-8", errors="replace").split("\n")[:HEAD_LINES]


def _whole_file_head(status: str, hunks: Sequence[Hunk]) -> list[str]:
    """The first lines of an added ("A") or deleted ("D") file: its one hunk is all of it."""
    tag = "+" if status == "A" else "-"
    return [line[1:] for line in hunks[0].lines if line[:1] == tag][:HEAD_LINES]


def _file_head(path: Path) -> list[str]:
    """The first lines of the file at ``path``; none when it cannot be read."""
    try:
        with open(path, "rb") as source:
            data = b"".join(source.readline() for _ in range(HEAD_LINES))
    except (OSError, ValueError):
        return []  # gone since the diff was read: nothing to search
    return data.decode("utf-8", errors="replace").split("\n")[:HEAD_LINES]


def _branch_since(git_repo, base: str) -> tuple[str, str]:
    """(merge base, HEAD) for ``base``: HEAD's commits since it forked from ``base``."""
    try:
        head = resolve_commit(git_repo, "HEAD")
    except HunkwiseError:
        raise HunkwiseError(
            f"{git_repo.working_tree_dir} has no commits yet: nothing is committed to review "
            f"against {base!r}"
        ) from None
    try:
        fork = resolve_commit(git_repo, base)
    except HunkwiseError:
        raise HunkwiseError(
            f"unknown base {base!r} in {git_repo.working_tree_dir}: name a branch, tag or "
            "commit (a remote branch such as origin/main needs a `git fetch` first)"
        ) from None
    return merge_base(git_repo, fork, head, f"{base}...HEAD"), head


# -- renderers ---------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """No line breaks or control characters from a model's output or a commit subject."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(printable.split())


def finding_column(finding: Finding) -> int:
    """The 1-based column a finding points at: the first non-blank character of the hunk's
    first added line (1 for a pure deletion)."""
    for line in finding.hunk_text.split("\n")[1:]:
        if line[:1] == "+":
            code = line[1:]
            return len(code) - len(code.lstrip()) + 1 if code.strip() else 1
    return 1


def display_path(path: str, root: Path | None = None, cwd: Path | None = None) -> str:
    """A repository-relative path as a linter shows it: relative to ``cwd`` when that is
    inside the repository ``root`` (``../app.py`` from a subfolder), else as it is."""
    if root is None or cwd is None:
        return path
    root, cwd = Path(root).resolve(), Path(cwd).resolve()
    if cwd != root and root not in cwd.parents:
        return path
    return os.path.relpath(root / path, cwd)


def format_probability(p: float) -> str:
    """p with two decimals, or two significant digits below 0.1 (never "0.00")."""
    return f"{p:.2f}" if p >= 0.1 or p == 0 else f"{p:.2g}"


def render_text(
    findings: Sequence[Finding], root: Path | None = None, cwd: Path | None = None
) -> str:
    """One line per finding, the way compilers and linters print them (``path:line:col:``,
    the path relative to ``cwd`` when the repository ``root`` is given), and its evidence
    as indented lines under it."""
    lines = []
    for finding in findings:
        where = f"{display_path(finding.path, root, cwd)}:{finding.start_line}:{finding_column(finding)}"
        lines.append(f"{where}: warning: {finding.text} [{RULE_ID}]")
        lines.extend(f"    {_one_line(evidence.summary)}" for evidence in finding.evidence)
    return "".join(line + "\n" for line in lines)


def render_json(findings: Sequence[Finding], skipped: Sequence[Skip] = ()) -> str:
    """The findings, and the files and hunks the filters kept out of the review."""
    document = {
        "tool": TOOL_NAME,
        "version": __version__,
        "findings": [finding.to_dict() for finding in findings],
        "skipped": [skip.to_dict() for skip in skipped],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _related_locations(finding: Finding, root: Path | None) -> dict:
    """SARIF ``relatedLocations`` for the evidence whose file exists in the repository
    today (all of it is in the result's ``properties`` too)."""
    related = []
    for number, evidence in enumerate(finding.evidence, 1):
        if root is None or not evidence.path or not (root / evidence.path).is_file():
            continue
        related.append(
            {
                "id": number,
                "physicalLocation": {
                    "artifactLocation": {"uri": quote(evidence.path), "uriBaseId": "%SRCROOT%"}
                },
                "message": {"text": _one_line(evidence.summary)},
            }
        )
    return {"relatedLocations": related} if related else {}


def render_sarif(findings: Sequence[Finding], root: Path | None = None) -> str:
    """A SARIF 2.1.0 log with one run, for code-scanning uploads and SARIF viewers;
    ``root``: the repository, where evidence files are looked up."""
    rule = {
        "id": RULE_ID,
        "name": "ReviewNeeded",
        "shortDescription": {"text": "This change may need a code review."},
        "fullDescription": {
            "text": "The review-necessity adapter, trained on this repository's history, "
            "estimates that this hunk is likely to need a later fix."
        },
        "defaultConfiguration": {"level": "warning"},
    }
    results = [
        {
            "ruleId": RULE_ID,
            "ruleIndex": 0,
            "level": "warning",
            "message": {"text": finding.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {
                            "uri": quote(finding.path),
                            "uriBaseId": "%SRCROOT%",
                        },
                        "region": {
                            "startLine": finding.start_line,
                            "endLine": finding.end_line,
                        },
                    }
                }
            ],
            "partialFingerprints": {"hunkwiseHunk/v1": finding.hunk_id},
            "properties": {
                "probability": finding.probability,
                "evidence": [evidence.to_dict() for evidence in finding.evidence],
            },
            **_related_locations(finding, root),
        }
        for finding in findings
    ]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": __version__,
                        "rules": [rule],
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
