"""Running git read-only: the one environment every git child of hunkwise gets, opening a
repository with errors a user can act on, and the revision look-ups (commits, ranges,
merge bases, the empty tree, the walk's order) that reviews and mining share."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from training.errors import HunkwiseError

if TYPE_CHECKING:
    import git

# gitpython is imported where it is used: importing it takes about 0.2 s, which the
# language server's start-up and `hunkwise --help` should not pay.

#: Options that make git's output independent of the user's configuration.
GIT_CONFIG = (
    "-c",
    "core.quotePath=false",
    "-c",
    "diff.noprefix=false",
    "-c",
    "diff.mnemonicPrefix=false",
    "-c",
    "diff.suppressBlankEmpty=false",
    "-c",
    "log.showSignature=false",
    "-c",
    "diff.renames=true",
)

#: For a process that is not git but starts git (the language server, the trainer it
#: runs): reading a repository must never refresh its index stat cache, a write.
NO_OPTIONAL_LOCKS = {"GIT_OPTIONAL_LOCKS": "0"}


def read_only_env(git_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """The variables every git child of hunkwise gets on top of the inherited environment:
    no optional locks (see ``NO_OPTIONAL_LOCKS``), no prompts, no pager, git's messages
    untranslated (they are parsed and shown), and ``git_dir`` named explicitly when given
    (a bare mirror without a config file is still found)."""
    env = {**NO_OPTIONAL_LOCKS, "GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    if git_dir is not None:
        env["GIT_DIR"] = str(git_dir)
    return env


# -- opening a repository ------------------------------------------------------------------


def open_repository(path: str | os.PathLike) -> git.Repo:
    """The repository at ``path`` itself, a working tree or a bare one (what ``hunkwise
    mine`` reads), or a clear error."""
    import git

    try:
        return git.Repo(path, search_parent_directories=False)
    except git.NoSuchPathError as error:
        raise HunkwiseError(f"{path}: no such directory") from error
    except git.InvalidGitRepositoryError as error:
        raise HunkwiseError(
            f"{path}: not a git repository (run hunkwise inside a clone, or pass its path)"
        ) from error


def open_repository_containing(path: Path) -> git.Repo:
    """The git repository containing ``path`` (a file or folder inside a work tree, as a
    review names it), or a clear error."""
    import git

    try:
        return git.Repo(Path(path), search_parent_directories=True)
    except git.NoSuchPathError as error:
        raise HunkwiseError(f"{path} does not exist") from error
    except git.InvalidGitRepositoryError as error:
        raise HunkwiseError(f"{path} is not inside a git repository") from error


def repo_root(path: Path) -> Path:
    """The top-level directory of the git work tree containing ``path``."""
    repo = open_repository_containing(path)
    return Path(repo.working_tree_dir or repo.git_dir).resolve()


# -- running git ---------------------------------------------------------------------------


def run_git(repo: git.Repo, *args: str, stdin: int | None = None) -> bytes:
    """The output of ``git <args>`` in ``repo`` (run with ``GIT_CONFIG`` and the read-only
    environment), or a HunkwiseError with git's last line of complaint."""
    import git

    try:
        return repo.git.execute(
            ["git", *GIT_CONFIG, *args],
            env=read_only_env(),
            istream=stdin,
            stdout_as_string=False,
            strip_newline_in_stdout=False,
        )
    except git.GitCommandError as error:
        detail = (error.stderr or "").strip().splitlines()
        reason = detail[-1].removeprefix("stderr: ").strip(" '") if detail else str(error)
        raise HunkwiseError(f"git {args[0]} failed in {repo.working_tree_dir}: {reason}") from error


def run_git_text(repo: git.Repo, *args: str, stdin: int | None = None) -> str:
    """:func:`run_git`'s output decoded (bytes that are not UTF-8 replaced)."""
    return run_git(repo, *args, stdin=stdin).decode("utf-8", errors="replace")


# -- revisions -----------------------------------------------------------------------------


def resolve_commit(repo: git.Repo, rev: str) -> str:
    """The commit id ``rev`` names, or a HunkwiseError that says it names none."""
    if not rev or rev.startswith("-"):
        raise HunkwiseError(f"{rev!r} is not a revision")
    try:
        return run_git_text(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"
        ).strip()
    except HunkwiseError:
        raise HunkwiseError(f"unknown revision {rev!r} in {repo.working_tree_dir}") from None


def commit_range(repo: git.Repo, spec: str) -> tuple[str, str]:
    """The two commits to diff for ``A..B`` (``A...B``: from their merge base)."""
    operator = "..." if "..." in spec else ".."
    left, _, right = spec.partition(operator)
    if not left and not right:
        raise HunkwiseError(f"{spec!r} is not a range; write it as A...B (or A..B)")
    # As in git, an omitted end means HEAD.
    left, right = (resolve_commit(repo, side or "HEAD") for side in (left, right))
    if operator == "...":
        left = merge_base(repo, left, right, spec)
    return left, right


def merge_base(repo: git.Repo, left: str, right: str, spec: str) -> str:
    """The commit ``right`` forked from ``left`` at (git's best merge base) for the
    three-dot ``spec``, or a HunkwiseError for two histories without a common commit."""
    try:
        return run_git_text(repo, "merge-base", left, right).strip()
    except HunkwiseError:  # both sides resolved: git found no common ancestor
        a, _, b = spec.partition("...")
        a, b = a or "HEAD", b or "HEAD"
        raise HunkwiseError(
            f"{a} and {b} share no commit, so {spec} has no merge base to review from; "
            f"{a}..{b} compares the two trees whole"
        ) from None


def empty_tree(repo: git.Repo) -> str:
    """The id of the empty tree in ``repo``'s object format."""
    # Computed rather than hard-coded: SHA-256 repositories have a different empty tree.
    # hash-object without -w writes nothing.
    return run_git_text(
        repo, "hash-object", "-t", "tree", "--stdin", stdin=subprocess.DEVNULL
    ).strip()


def head_or_empty_tree(repo: git.Repo) -> str:
    """HEAD, or the empty tree in a repository without commits yet."""
    try:
        return resolve_commit(repo, "HEAD")
    except HunkwiseError:
        return empty_tree(repo)


def has_commits(repo: git.Repo, rev: str) -> bool:
    """Whether ``rev`` names a commit (a repository without commits has none to walk)."""
    import git

    try:
        repo.git.rev_parse(
            "--verify", "--quiet", f"{rev}^{{commit}}", env=read_only_env(repo.git_dir)
        )
        return True
    except git.GitCommandError:
        return False


def commit_order(
    repo: git.Repo, rev: str, max_commits: int | None
) -> list[tuple[str, tuple[str, ...]]]:
    """(sha, parents) of the walk, parents before children (``--topo-order --reverse``)."""
    args = ["--topo-order", "--reverse", "--parents"]
    if max_commits:
        args.append(f"--max-count={max_commits}")
    out = repo.git.rev_list(*args, rev, env=read_only_env(repo.git_dir))
    order = []
    for line in out.splitlines():
        sha, *parents = line.split()
        order.append((sha, tuple(parents)))
    return order
