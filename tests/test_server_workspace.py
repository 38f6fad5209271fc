"""Base versions from real git repositories (HEAD, the index, any revision, untracked and
ignored files, binary and large files, no commits yet), the changed-file listing of a
workspace review, and the guarantee that none of it writes into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.workspace import BaseText, Repositories, Skipped, comparable_buffer, disk_path
from tests.gitrepo import GitRepo

APP = "a = 1\nb = 2\n"


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("Add app", app_dot_py=APP, _dot_gitignore="build/\n", blob_dot_bin=b"\x00\x01")
    return repo


@pytest.fixture
def repos():
    repositories = Repositories(max_bytes=1000)
    yield repositories
    repositories.close()


def _base(repos: Repositories, path: Path, ref: str = "HEAD", buffer: str = "x\n"):
    index = ref.upper() == "INDEX" or ref == ":"
    return repos.base_for(path, ref, index, buffer)


def test_head_is_the_committed_text(repo: GitRepo, repos: Repositories) -> None:
    repo.write("app.py", "changed\n")
    base = _base(repos, repo.path / "app.py")
    assert isinstance(base, BaseText)
    assert (base.text, base.relpath, base.ref) == (APP, "app.py", "HEAD")
    assert base.repo_root == repo.path.resolve()
    assert base.commit == repo.head()
    assert base.blob == repo.git("rev-parse", "HEAD:app.py").strip()
    assert base.label == f"HEAD ({repo.head()[:7]})"


def test_the_index_and_any_revision(repo: GitRepo, repos: Repositories) -> None:
    first = repo.head()
    repo.commit("Edit app", app_dot_py="a = 10\nb = 2\n")
    repo.write("app.py", "staged\n")
    repo.git("add", "app.py")
    repo.write("app.py", "unstaged\n")
    assert _base(repos, repo.path / "app.py", "INDEX").text == "staged\n"
    assert _base(repos, repo.path / "app.py", ":").label == "the index"
    assert _base(repos, repo.path / "app.py", first).text == APP
    repo.git("branch", "feature", first)
    assert _base(repos, repo.path / "app.py", "feature").text == APP
    assert _base(repos, repo.path / "app.py", "HEAD~1").text == APP
    unknown = _base(repos, repo.path / "app.py", "origin/nope")
    assert isinstance(unknown, Skipped) and unknown.notify
    assert "unknown revision 'origin/nope'" in unknown.reason


def test_untracked_is_all_added_ignored_is_skipped(repo: GitRepo, repos: Repositories) -> None:
    repo.write("new.py", "x = 1\n")
    base = _base(repos, repo.path / "new.py")
    assert isinstance(base, BaseText) and base.text == "" and base.blob is None
    repo.write("build/out.py", "y = 1\n")
    assert _base(repos, repo.path / "build" / "out.py") == Skipped("ignored by git")
    # not even on disk yet (a new, unsaved buffer): still all added
    assert _base(repos, repo.path / "later" / "new.py").text == ""


def test_files_that_get_no_review(repo: GitRepo, repos: Repositories, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.py"
    assert _base(repos, outside) == Skipped("outside a git repository")
    assert _base(repos, repo.path / ".git" / "config") == Skipped("outside a git repository")
    assert _base(repos, repo.path / "blob.bin") == Skipped("binary")
    assert _base(repos, repo.path / "app.py", buffer="a\0b") == Skipped("binary")
    assert _base(repos, repo.path / "app.py", buffer="x" * 1001).reason.startswith("larger than")
    repo.commit("Big", big_dot_txt="y" * 2000)
    assert _base(repos, repo.path / "big.txt").reason.startswith("base version larger")


def test_a_repository_without_commits(tmp_path: Path, repos: Repositories) -> None:
    fresh = GitRepo(tmp_path / "fresh")
    fresh.write("a.py", "x = 1\n")
    base = _base(repos, fresh.path / "a.py")
    assert isinstance(base, BaseText) and base.text == "" and base.commit == ""
    assert base.label == "HEAD (no commits yet)"
    assert [p.name for p in repos.changed_files(fresh.path, "HEAD", False)] == ["a.py"]


def test_changed_files_and_nothing_is_written(repo: GitRepo, repos: Repositories) -> None:
    repo.commit("More", gone_dot_py="z\n", same_dot_py="s\n")
    repo.write("app.py", "changed\n")
    repo.write("new.py", "n\n")
    repo.write("build/out.py", "ignored\n")
    (repo.path / "gone.py").unlink()
    # A stale stat cache: plain `git diff` would refresh (write) the index to fix it.
    same = repo.path / "same.py"
    os.utime(same, (same.stat().st_atime + 100, same.stat().st_mtime + 100))
    index = repo.path / ".git" / "index"
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    names = sorted(p.name for p in repos.changed_files(repo.path, "HEAD", False))
    assert names == ["app.py", "new.py", "same.py"]  # same.py: stat changed, content not
    assert sorted(p.name for p in repos.changed_files(repo.path, "INDEX", True)) == names
    _base(repos, repo.path / "app.py", "INDEX")
    _base(repos, repo.path / "new.py")
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert not (repo.path / ".git" / "index.lock").exists()


def test_crlf_buffers_are_compared_as_git_would() -> None:
    assert comparable_buffer("a\nb\n", "a\r\nb\r\n") == "a\nb\n"
    assert comparable_buffer("a\r\nb\r\n", "a\r\nc\r\n") == "a\r\nc\r\n"
    assert comparable_buffer("a\n", "a\n") == "a\n"


def test_a_deleted_file_is_compared_with_its_base(repo: GitRepo, repos: Repositories) -> None:
    (repo.path / "app.py").unlink()  # the buffer still open in the editor
    assert _base(repos, repo.path / "app.py").text == APP
    assert _base(repos, repo.path / "app.py", "INDEX").text == APP


def test_only_file_uris_of_paths_a_file_system_can_hold_name_files_on_disk() -> None:
    assert disk_path("file:///repo/app.py") == Path("/repo/app.py")
    for uri in (
        "untitled:Untitled-1",
        "git:/repo/app.py?%7B%22ref%22%3A%22HEAD%22%7D",
        "file:relative.py",
        "file:///repo/a%00b.py",
        "file:///repo/\ud800.py",
        "file:",
    ):
        assert disk_path(uri) is None, uri
