"""A document's repository and its base version: the git work tree that holds a file (found
with gitpython) and the file's text at the diff base (``HEAD``, the index, or any revision),
read from git's object store and cached by blob id. Reads only: every git child runs in
``training.gitio``'s read-only environment, so not even the index stat cache is refreshed."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pygls.uris import to_fs_path

from server.caching import LruCache
from training.gitio.command import empty_tree, read_only_env
from training.gitio.content import looks_binary

log = logging.getLogger(__name__)

#: Files (buffer or base) larger than this get no review.
MAX_FILE_BYTES = 1_000_000


@dataclass(frozen=True)
class BaseText:
    """The text a buffer is compared with, and where it came from."""

    repo_root: Path
    relpath: str
    text: str
    ref: str
    #: the commit ``ref`` named when the review ran (None for the index, "" when the
    #: repository has no commits yet)
    commit: str | None
    #: the blob the text came from (None: the base has no such file, so all of it is added)
    blob: str | None

    @property
    def label(self) -> str:
        """How hover texts name the base: ``HEAD (1a2b3c4)``, ``the index``."""
        if self.commit is None:
            return "the index"
        if not self.commit:
            return f"{self.ref} (no commits yet)"
        return f"{self.ref} ({self.commit[:7]})"


@dataclass(frozen=True)
class Skipped:
    """Why a file gets no review; ``notify`` asks for a message to the user (not only a
    log line), for problems the user should fix, such as an unknown ``diffBase``."""

    reason: str
    notify: bool = False


def disk_path(uri: str) -> Path | None:
    """The local path a ``file:`` URI names, or None: another scheme (``untitled:``, VS
    Code's ``git:`` views), a path that is not absolute, or one no file system can hold (a
    NUL, a lone surrogate)."""
    path = to_fs_path(uri) if uri.startswith("file:") else None
    if not path or not os.path.isabs(path):
        return None
    try:
        if b"\0" in os.fsencode(path):
            return None
    except UnicodeError:
        return None
    return Path(path)


def comparable_buffer(base: str, buffer: str) -> str:
    """The buffer as git would diff it: when the base has LF endings and the buffer CRLF
    ones (``core.autocrlf``, or an editor set to CRLF), git's clean filter compares LF
    lines, so do the same. Line numbers do not change."""
    if "\r\n" in buffer and "\r\n" not in base:
        return buffer.replace("\r\n", "\n")
    return buffer


class Repositories:
    """Finds repositories and reads base versions. Not thread-safe: the server calls it
    from one thread (gitpython keeps ``git cat-file`` processes per repository)."""

    def __init__(self, max_bytes: int = MAX_FILE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._repos: dict[Path, Any] = {}
        self._roots: dict[Path, Path | None] = {}
        self._blobs = LruCache(256)
        self._tree_entries = LruCache(4096)
        self._indexes: dict[Path, tuple[tuple[int, int], Any]] = {}
        self._ignored = LruCache(1024)

    # -- repositories ------------------------------------------------------------------

    def repo_for(self, path: Path) -> Any | None:
        """The gitpython ``Repo`` whose work tree holds the file ``path``, or None."""
        return self.repo_in(Path(path).parent)

    def repo_in(self, directory: Path) -> Any | None:
        """The gitpython ``Repo`` whose work tree holds ``directory``, or None."""
        if directory not in self._roots:
            self._roots[directory] = self._find_root(directory)
        root = self._roots[directory]
        return None if root is None else self._repos[root]

    def _find_root(self, directory: Path) -> Path | None:
        import git

        probe = directory
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            repo = git.Repo(probe, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, OSError):
            return None
        if repo.bare or repo.working_tree_dir is None:
            return None
        root = Path(os.path.realpath(repo.working_tree_dir))
        if root in self._repos:
            repo.close()
        else:
            # Every git child of this repo, the cat-file processes included.
            repo.git.update_environment(**read_only_env())
            self._repos[root] = repo
        return root

    def root_of(self, directory: Path) -> Path | None:
        """The top of the work tree holding ``directory``, or None."""
        repo = self.repo_in(directory)
        return None if repo is None else Path(os.path.realpath(repo.working_tree_dir))

    def relpath(self, path: Path) -> tuple[Any, str] | None:
        """(repo, path relative to its work tree in git's spelling) or None when ``path``
        is outside any work tree (or inside a ``.git`` directory)."""
        repo = self.repo_for(path)
        if repo is None:
            return None
        root = Path(os.path.realpath(repo.working_tree_dir))
        real = Path(os.path.realpath(path))
        try:
            relative = real.relative_to(root)
        except ValueError:
            return None
        if not relative.parts or relative.parts[0] == ".git":
            return None
        return repo, relative.as_posix()

    # -- base versions -----------------------------------------------------------------

    def base_for(
        self, path: Path, diff_base: str, uses_index: bool, buffer: str
    ) -> BaseText | Skipped:
        """The base version of ``path`` to compare ``buffer`` with, or why there is none."""
        located = self.relpath(path)
        if located is None:
            return Skipped("outside a git repository")
        repo, relpath = located
        if len(buffer) > self.max_bytes:
            return Skipped(f"larger than {self.max_bytes} bytes")
        if looks_binary(buffer):
            return Skipped("binary")
        root = Path(os.path.realpath(repo.working_tree_dir))
        if uses_index:
            commit, blob = None, self._index_blob(repo, root, relpath)
        else:
            try:
                commit = self._resolve(repo, diff_base)
            except LookupError:
                if diff_base != "HEAD":
                    return Skipped(f"unknown revision {diff_base!r} in {root}", notify=True)
                commit, blob = "", None  # a repository without commits yet
            else:
                blob = self._tree_blob(repo, commit, relpath)
        return self._finish(repo, root, relpath, diff_base, commit, blob, buffer)

    def _finish(
        self,
        repo: Any,
        root: Path,
        relpath: str,
        ref: str,
        commit: str | None,
        blob: str | None,
        buffer: str,
    ) -> BaseText | Skipped:
        if blob is None:
            if self._is_ignored(repo, relpath):
                return Skipped("ignored by git")
            return BaseText(root, relpath, "", ref, commit, None)
        data = self._blob_bytes(repo, blob)
        if len(data) > self.max_bytes:
            return Skipped(f"base version larger than {self.max_bytes} bytes")
        if looks_binary(data):
            return Skipped("binary")
        return BaseText(root, relpath, data.decode("utf-8", errors="replace"), ref, commit, blob)

    def _resolve(self, repo: Any, ref: str) -> str:
        try:
            return repo.commit(ref).hexsha
        except Exception as error:  # gitpython raises BadName, ValueError, IndexError ...
            raise LookupError(ref) from error

    def _tree_blob(self, repo: Any, commit: str, relpath: str) -> str | None:
        key = (commit, relpath)
        if key not in self._tree_entries:
            try:
                entry = repo.commit(commit).tree / relpath
                blob = entry.hexsha if entry.type == "blob" else None
            except KeyError:
                blob = None
            self._tree_entries.put(key, blob)
        return self._tree_entries.get(key)

    def _index_blob(self, repo: Any, root: Path, relpath: str) -> str | None:
        import git

        index_path = Path(repo.git_dir) / "index"
        try:
            stat = index_path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._indexes.get(root)
        if cached is None or cached[0] != stamp:
            cached = (stamp, git.IndexFile(repo, str(index_path)))
            self._indexes[root] = cached
        entries = cached[1].entries
        for stage in (0, 2):  # 2: "ours" while a merge conflict is unresolved
            entry = entries.get((relpath, stage))
            if entry is not None:
                return entry.hexsha
        return None

    def _blob_bytes(self, repo: Any, blob: str) -> bytes:
        data = self._blobs.get(blob)
        if data is None:
            data = repo.odb.stream(bytes.fromhex(blob)).read()
            self._blobs.put(blob, data)
        return data

    def _is_ignored(self, repo: Any, relpath: str) -> bool:
        key = (repo.working_tree_dir, relpath)
        if key not in self._ignored:
            try:
                ignored = bool(repo.ignored(relpath))
            except Exception:  # check-ignore failing must not stop a review
                ignored = False
            self._ignored.put(key, ignored)
        return bool(self._ignored.peek(key))

    # -- whole work trees --------------------------------------------------------------

    def changed_files(self, root: Path, diff_base: str, uses_index: bool) -> list[Path]:
        """Files of the work tree at ``root`` that may differ from the base, untracked ones
        included (ignored ones not), deleted ones left out.

        Plumbing only: porcelain ``git diff`` refreshes the index (a write) even with
        GIT_OPTIONAL_LOCKS=0. A file whose stat data changed but not its content is listed
        too; its review finds no hunks."""
        repo = self.repo_in(root)
        if repo is None:
            return []
        if uses_index:
            compare = ["git", "diff-files", "--name-only", "-z", "--no-renames"]
        else:
            try:
                tree = self._resolve(repo, diff_base)
            except LookupError:
                if diff_base != "HEAD":
                    raise
                tree = empty_tree(repo)
            compare = ["git", "diff-index", "--name-only", "-z", "--no-renames", tree, "--"]
        changed = repo.git.execute(compare)
        untracked = repo.git.execute(["git", "ls-files", "--others", "--exclude-standard", "-z"])
        work_tree = Path(repo.working_tree_dir)
        names = dict.fromkeys(name for name in (changed + "\0" + untracked).split("\0") if name)
        return [work_tree / name for name in names if (work_tree / name).is_file()]

    def forget(self) -> None:
        """Drop cached lookups that may have changed on disk (ignores, repository roots)."""
        self._ignored.clear()
        self._roots.clear()

    def close(self) -> None:
        for repo in self._repos.values():
            repo.close()
        self._repos.clear()
        self._roots.clear()
