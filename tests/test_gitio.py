"""training.gitio's small parts against real git: path quoting as git writes it, git's binary
test on bytes and on text, the read-only environment, and revision look-ups (the empty tree
of both object formats, ranges and their errors)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo, git_env
from training.errors import HunkwiseError
from training.gitio.command import (
    NO_OPTIONAL_LOCKS,
    commit_range,
    empty_tree,
    head_or_empty_tree,
    open_repository,
    read_only_env,
    resolve_commit,
)
from training.gitio.content import BINARY_PROBE_BYTES, looks_binary
from training.gitio.paths import quote_text, unquote, unquote_text

NAMES = ["plain.py", "two words.py", 'q"uote.py', "back\\slash.py", "tab\there.py", "caf\u00e9.py"]


def test_unquote_reads_every_name_as_git_quotes_it(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    for name in NAMES:
        repo.write(name, "x\n")
    (repo.path / "new\nline.py").write_bytes(b"x\n")
    (repo.path / "latin\xe9.py".encode().decode("utf-8", "surrogateescape")).write_bytes(b"x\n")
    repo.git("add", "-A")
    listed = subprocess.run(
        ["git", "-c", "core.quotePath=true", "ls-files"],
        cwd=repo.path,
        env=repo.env,
        capture_output=True,
        check=True,
    ).stdout.splitlines()
    assert any(line.startswith(b'"') for line in listed)  # git did quote some
    expected = sorted(name.encode() for name in [*NAMES, "new\nline.py", "latin\xe9.py"])
    assert sorted(unquote(line) for line in listed) == expected


def test_unquote_is_strict_about_what_git_never_writes() -> None:
    assert unquote(b"plain") == b"plain"
    assert unquote(b'"a\\303\\251\\t\\"b\\\\"') == b'a\xc3\xa9\t"b\\'
    tolerated = {
        b'"unbalanced': b'"unbalanced',
        b'"': b'"',
        b'"bad \\q escape"': b"bad \\q escape",
        b'"octal \\8"': b"octal \\8",
        b'"\\47x"': b"\\47x",
    }
    for damaged, kept in tolerated.items():
        with pytest.raises(ValueError):
            unquote(damaged)
        assert unquote(damaged, strict=False) == kept


def test_a_patch_name_keeps_what_git_would_not_write() -> None:
    assert unquote_text('"caf\\303\\251 b.py"') == "caf\u00e9 b.py"
    assert unquote_text('"hand\\made.py"') == "hand\\made.py"
    assert unquote_text('"half') == '"half'
    assert unquote_text('"\\377.py"') == "\udcff.py"  # not UTF-8: a surrogate escape


@pytest.mark.parametrize("name", [*NAMES, "a b/c d", "\udcff\udcfe.bin", ""])
def test_quote_text_is_read_back_whole(name: str) -> None:
    quoted = quote_text(name)
    assert " " not in quoted
    assert unquote_text(quoted) == name


def test_binary_is_a_nul_in_the_first_8000_bytes() -> None:
    assert looks_binary(b"x" * (BINARY_PROBE_BYTES - 1) + b"\0")
    assert not looks_binary(b"x" * BINARY_PROBE_BYTES + b"\0")
    # Bytes, not characters: 4000 two-byte characters fill the probe.
    text = "\u00e9" * 4000 + "\0"
    assert not looks_binary(text)
    assert looks_binary(text) == looks_binary(text.encode())
    assert looks_binary("\u00e9" * 3999 + "\0")
    assert not looks_binary("")


def test_the_read_only_environment() -> None:
    assert NO_OPTIONAL_LOCKS == {"GIT_OPTIONAL_LOCKS": "0"}
    env = read_only_env()
    assert env["GIT_OPTIONAL_LOCKS"] == "0" and env["GIT_TERMINAL_PROMPT"] == "0"
    assert (env["GIT_PAGER"], env["LC_ALL"]) == ("cat", "C")
    assert "GIT_DIR" not in env
    assert read_only_env(Path("/x/.git"))["GIT_DIR"] == "/x/.git"


@pytest.mark.parametrize(
    ("object_format", "tree"),
    [
        ("sha1", "4b825dc642cb6eb9a060e54bf8d69288fbee4904"),
        ("sha256", "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"),
    ],
)
def test_the_empty_tree_of_each_object_format(tmp_path: Path, object_format: str, tree: str):
    path = tmp_path / "repo"
    subprocess.run(
        ["git", "init", "-q", f"--object-format={object_format}", str(path)],
        env=git_env(tmp_path),
        check=True,
    )
    repo = open_repository(path)
    assert empty_tree(repo) == tree
    assert head_or_empty_tree(repo) == tree  # no commits yet
    assert not list(path.glob(".git/objects/??"))  # nothing was written


def test_revisions_and_ranges(tmp_path: Path) -> None:
    history = GitRepo(tmp_path / "repo")
    first = history.commit("one", a_dot_py="a = 1\n")
    second = history.commit("two", a_dot_py="a = 2\n")
    repo = open_repository(history.path)
    assert resolve_commit(repo, "HEAD~1") == first
    assert commit_range(repo, "HEAD~1..") == (first, second)
    assert commit_range(repo, "HEAD~1...HEAD") == (first, second)
    with pytest.raises(HunkwiseError, match="unknown revision 'nope'"):
        resolve_commit(repo, "nope")
    with pytest.raises(HunkwiseError, match="is not a revision"):
        resolve_commit(repo, "--all")
    with pytest.raises(HunkwiseError, match="is not a range"):
        commit_range(repo, "..")
