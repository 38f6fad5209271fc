"""Hunks -> findings: the review-necessity gate over every hunk, then review comments for
the flagged ones; the git diffs ``hunkwise review`` reads; and the text, JSON and SARIF
renderings of findings. Shared by the command line and the language server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from training import __version__
from training.errors import HunkwiseError
from training.hunks import Hunk
from training.mining.gitlog import DIFF_OPTIONS, GIT_CONFIG, parse_git_diff
from training.tasks import RCG

if TYPE_CHECKING:
    from training.engine import Engine

RULE_ID = "review-needed"
TOOL_NAME = "hunkwise"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"


@dataclass(frozen=True)
class Finding:
    """A hunk the review-necessity adapter flagged.

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

    @property
    def message(self) -> str:
        """The comment, or a generic message while there is none."""
        if self.comment:
            return self.comment
        return f"This change may need review (p={self.probability:.2f})"

    def to_dict(self) -> dict:
        return asdict(self)


def review_hunks(
    engine: Engine, hunks: Sequence[Hunk], threshold: float = 0.5, comments: bool = True
) -> list[Finding]:
    """Score every hunk in one batched call; hunks scoring at least ``threshold`` become
    findings (in input order), with a generated comment each when ``comments`` is on."""
    if not hunks:
        return []
    return findings_for(engine, hunks, engine.score(hunks), threshold, comments)


def findings_for(
    engine: Engine,
    hunks: Sequence[Hunk],
    probabilities: Sequence[float],
    threshold: float = 0.5,
    comments: bool = True,
) -> list[Finding]:
    """Findings for already scored hunks: those at or over ``threshold``, commented. A
    bundle without an rcg adapter (a history with no labelled fixes has no comments to
    learn) gives findings whose message is the probability message."""
    flagged = [(hunk, p) for hunk, p in zip(hunks, probabilities, strict=True) if p >= threshold]
    texts: list[str | None] = [None] * len(flagged)
    if comments and flagged and engine.has_task(RCG):
        texts = list(engine.comment([hunk for hunk, _ in flagged]))
    findings = []
    for (hunk, p), text in zip(flagged, texts, strict=True):
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
            )
        )
    return findings


def finding_lines(hunk: Hunk) -> tuple[int, int]:
    """(first, last) new-side line a finding about ``hunk`` points at."""
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


def hunks_for(repo: Path, spec: str | None = None, staged: bool = False) -> list[Hunk]:
    """The hunks to review in ``repo``.

    ``spec`` is a revision (that commit against its first parent; a root commit against
    the empty tree) or a range ``A..B`` (``A...B``: from their merge base); ``staged``
    reviews the index against HEAD; neither reviews the working tree's uncommitted
    changes to tracked files against HEAD. Reads the repository, never writes to it.
    """
    if spec is not None and staged:
        raise HunkwiseError("give either a revision (or range) or --staged, not both")
    git_repo = open_repo(repo)
    # Plumbing only: porcelain `git diff` refreshes the index (a write into the user's
    # repository) even with GIT_OPTIONAL_LOCKS=0.
    if staged:
        command = ["diff-index", "--cached", _head_or_empty(git_repo)]
    elif spec is None:
        command = ["diff-index", _head_or_empty(git_repo)]
    elif ".." in spec:
        command = ["diff-tree", "-r", *_range(git_repo, spec)]
    else:
        commit = _resolve(git_repo, spec)
        parents = _git(git_repo, "rev-list", "--parents", "-n", "1", commit).split()
        parent = parents[1] if len(parents) > 1 else _empty_tree(git_repo)
        command = ["diff-tree", "-r", parent, commit]
    # Mining's fixed options and parser, so a review sees hunks exactly as training did.
    data = _git(git_repo, command[0], "-p", *DIFF_OPTIONS, *command[1:], "--", raw=True)
    return [
        hunk
        for file in parse_git_diff(data)
        if not (file.binary or file.submodule)
        for hunk in file.hunks
    ]


def open_repo(path: Path):
    """The git repository containing ``path`` (a gitpython ``Repo``)."""
    import git

    try:
        return git.Repo(Path(path), search_parent_directories=True)
    except git.NoSuchPathError as error:
        raise HunkwiseError(f"{path} does not exist") from error
    except git.InvalidGitRepositoryError as error:
        raise HunkwiseError(f"{path} is not inside a git repository") from error


def repo_root(path: Path) -> Path:
    """The top-level directory of the git work tree containing ``path``."""
    git_repo = open_repo(path)
    return Path(git_repo.working_tree_dir or git_repo.git_dir).resolve()


def _git(git_repo, *args: str, stdin: int | None = None, raw: bool = False):
    import git

    # GIT_OPTIONAL_LOCKS=0: git must not refresh the index (a write) behind our back.
    env = {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        out = git_repo.git.execute(
            ["git", *GIT_CONFIG, *args],
            env={**os.environ, **env},
            istream=stdin,
            stdout_as_string=False,
            strip_newline_in_stdout=False,
        )
    except git.GitCommandError as error:
        detail = (error.stderr or "").strip().splitlines()
        reason = detail[-1].removeprefix("stderr: ").strip(" '") if detail else str(error)
        raise HunkwiseError(
            f"git {args[0]} failed in {git_repo.working_tree_dir}: {reason}"
        ) from error
    return out if raw else out.decode("utf-8", errors="replace")


def _resolve(git_repo, rev: str) -> str:
    """The commit id ``rev`` names, or a HunkwiseError that says it names none."""
    if not rev or rev.startswith("-"):
        raise HunkwiseError(f"{rev!r} is not a revision")
    try:
        return _git(
            git_repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
        ).strip()
    except HunkwiseError:
        where = git_repo.working_tree_dir
        raise HunkwiseError(f"unknown revision {rev!r} in {where}") from None


def _range(git_repo, spec: str) -> tuple[str, str]:
    """The two commits to diff for ``A..B`` (``A...B``: from their merge base)."""
    operator = "..." if "..." in spec else ".."
    left, _, right = spec.partition(operator)
    if not left and not right:
        raise HunkwiseError(f"{spec!r} is not a range; write it as A..B")
    # As in git, an omitted end means HEAD.
    left, right = (_resolve(git_repo, side or "HEAD") for side in (left, right))
    if operator == "...":
        left = _git(git_repo, "merge-base", left, right).strip()
    return left, right


def _head_or_empty(git_repo) -> str:
    """HEAD, or the empty tree in a repository without commits yet."""
    try:
        return _resolve(git_repo, "HEAD")
    except HunkwiseError:
        return _empty_tree(git_repo)


def _empty_tree(git_repo) -> str:
    # Computed rather than hard-coded: SHA-256 repositories have a different empty tree.
    # hash-object without -w writes nothing.
    return _git(git_repo, "hash-object", "-t", "tree", "--stdin", stdin=subprocess.DEVNULL).strip()


# -- renderers ---------------------------------------------------------------------------


def render_text(findings: Sequence[Finding]) -> str:
    """One line per finding, the way compilers and linters print them."""
    lines = []
    for finding in findings:
        # One line per finding, and no control characters from a model's output.
        printable = "".join(c if c.isprintable() else " " for c in finding.message)
        message = " ".join(printable.split())
        suffix = f" (p={finding.probability:.2f})" if finding.comment else ""
        lines.append(f"{finding.path}:{finding.start_line}: warning: {message}{suffix} [{RULE_ID}]")
    return "".join(line + "\n" for line in lines)


def render_json(findings: Sequence[Finding]) -> str:
    document = {
        "tool": TOOL_NAME,
        "version": __version__,
        "findings": [finding.to_dict() for finding in findings],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def render_sarif(findings: Sequence[Finding]) -> str:
    """A SARIF 2.1.0 log with one run, for code-scanning uploads and SARIF viewers."""
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
            "properties": {"probability": finding.probability},
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
