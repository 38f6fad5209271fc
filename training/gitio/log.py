"""Stream a repository's history as commits with their file diffs: ONE ``git log -p``
process through gitpython's command interface, parsed incrementally as it arrives; and the
same parser for one ``git diff``-family output.

PyDriller-like vocabulary (commit -> file diff -> hunk), without a subprocess per commit.
Nothing here writes into the repository.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from training.errors import HunkwiseError
from training.gitio.command import GIT_CONFIG, read_only_env
from training.gitio.paths import unquote
from training.hunks import Hunk

if TYPE_CHECKING:
    import git

# Each commit's header starts a line with NUL, SOH and "C " and ends with NUL, SOH. A diff
# line always starts with its prefix (" ", "+", "-", "\\", or a header word), so the
# marker cannot appear at the start of a line inside a diff, even in files whose diffs
# contain NUL bytes (git calls a file binary only for a NUL in its first 8,000 bytes).
_FORMAT = "%x00%x01C %H%x1f%P%x1f%at%x1f%ct%x1f%aI%x1f%B%x00%x01"

#: The diff git prints for the walk and for a review, the format this parser reads.
DIFF_OPTIONS = (
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "-M",
    "--unified=3",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--diff-algorithm=myers",
)


@dataclass
class FileDiff:
    """One file's change in one commit."""

    path: str
    old_path: str
    status: str  # "A" added, "D" deleted, "M" modified, "R" renamed
    binary: bool = False  # git said so, or the diff holds a NUL byte
    submodule: bool = False
    undecodable: bool = False
    malformed: bool = False  # the diff does not parse: cut short, counts that disagree
    size: int = 0  # bytes of diff body
    hunks: list[Hunk] = field(default_factory=list)


@dataclass
class Commit:
    """One commit of the walk, with its diff against its first parent."""

    sha: str
    parents: tuple[str, ...]
    author_time: int
    commit_time: int
    author_date: str
    message: str
    files: list[FileDiff] = field(default_factory=list)

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


def _path(raw: bytes, prefix: bytes) -> str:
    raw = unquote(raw.rstrip(b"\t"))
    if raw.startswith(prefix):
        raw = raw[len(prefix) :]
    return raw.decode("utf-8", "replace")


def _log_args(*extra: str) -> list[str]:
    return [
        *GIT_CONFIG,
        "log",
        "-p",
        *DIFF_OPTIONS,
        "--diff-merges=first-parent",
        f"--format={_FORMAT}",
        *extra,
    ]


def stream_commits(
    repo: git.Repo,
    rev: str = "HEAD",
    max_commits: int | None = None,
    jobs: int = 1,
    order: list[str] | None = None,
) -> Iterator[Commit]:
    """Every commit reachable from ``rev`` (newest ``max_commits`` only, if set), parents
    first, each with its diff against its first parent (merges too, so lines can be
    followed through them).

    With ``jobs`` 1, one ``git log -p`` process streams the whole walk. With more, the
    walk's ``order`` (shas, parents first) is cut into ``jobs`` contiguous ranges, each
    diffed by its own ``git log --no-walk`` process into a temporary file outside the
    repository, and read back in order: git's diff and rename work then uses several cores.
    """
    if jobs <= 1 or not order or len(order) < 2 * jobs:
        args = ["--topo-order", "--reverse"]
        if max_commits:
            args.append(f"--max-count={max_commits}")
        process = repo.git.execute(
            ["git", *_log_args(*args, rev, "--")], as_process=True, env=read_only_env(repo.git_dir)
        )
        yield from _finish(process.proc, _parse(_Prefetch(process.proc.stdout)))
        return
    size = -(-len(order) // jobs)
    with tempfile.TemporaryDirectory(prefix="hunkwise-log-") as tmp:
        started = []
        for index in range(0, len(order), size):
            out = open(Path(tmp) / f"part{index}", "w+b")  # noqa: SIM115 - closed below
            process = subprocess.Popen(
                ["git", *_log_args("--no-walk=unsorted", "--stdin")],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.PIPE,
                env={**os.environ, **read_only_env(repo.git_dir)},
            )
            process.stdin.write("\n".join(order[index : index + size]).encode() + b"\n")
            process.stdin.close()
            started.append((process, out))
        try:
            for process, out in started:
                process.wait()
                out.seek(0)
                yield from _finish(process, _parse(out))
        finally:
            for process, out in started:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                out.close()


class _Prefetch:
    """Reads a pipe in a thread, so git keeps writing while a chunk is parsed (a pipe holds
    64 KB: read in the parsing thread, git would wait for every chunk to be parsed).
    At most ``_QUEUED`` pieces (a pipe read returns at most the pipe's 64 KB) wait, so a
    slow parser bounds memory."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.pieces: queue.Queue[bytes] = queue.Queue(maxsize=_QUEUED)
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="hunkwise-git-reader", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            while piece := self.pipe.read1(_CHUNK):
                self.pieces.put(piece)
        except (OSError, ValueError):  # the pipe was closed: the walk stopped early
            pass
        finally:
            self.ended.set()

    def read(self, size: int) -> bytes:
        """At least ``size`` bytes (fewer only at the end), or b"" once all was read: the
        parser scans what it holds for commit headers, so it is fed in large pieces."""
        pieces: list[bytes] = []
        held = 0
        while held < size:
            try:
                piece = self.pieces.get(timeout=0.05)
            except queue.Empty:
                if self.ended.is_set() and self.pieces.empty():
                    break
                continue
            pieces.append(piece)
            held += len(piece)
        return b"".join(pieces)


def _finish(process, commits: Iterator[Commit]) -> Iterator[Commit]:
    """Yield the commits, then check that git succeeded."""
    try:
        yield from commits
    finally:
        if process.stdout:
            process.stdout.close()
        stderr = process.stderr.read() if process.stderr else b""
        code = process.wait()
        if code not in (0, -13):  # -13: we stopped reading early
            message = stderr.decode("utf-8", "replace").strip()
            raise HunkwiseError(f"git log failed ({code}): {message}")


_COMMIT_HEADER = re.compile(
    rb"^\x00\x01C ([0-9a-f]{40,64})\x1f([0-9a-f ]*)\x1f(-?\d+)\x1f(-?\d+)\x1f([^\x1f\x00]*)\x1f"
    rb"([^\x00]*)\x00\x01\n?",
    re.MULTILINE,
)
_FILE_START = re.compile(rb"^diff --git ", re.MULTILINE)
_HUNK_START = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@ ?(.*)\n?", re.MULTILINE)
_CHUNK = 1 << 22
_QUEUED = 256  # pieces waiting to be parsed: 16 MB of 64 KB pipe reads


def _parse(stream) -> Iterator[Commit]:
    """Commits from ``git log -p`` output, read in large chunks.

    Each commit's header (see ``_FORMAT``) splits the stream; within a commit, file and
    hunk boundaries are found with regular expressions over the whole text, and each
    hunk's body is decoded and split in one go rather than line by line. Whatever bytes a
    file's diff holds, only that file is affected (see ``_parse_file``).
    """
    buffer = b""
    while True:
        chunk = stream.read(_CHUNK)
        buffer += chunk
        headers = list(_COMMIT_HEADER.finditer(buffer))
        # Without more input, the last commit in the buffer may still be incomplete.
        complete = headers if not chunk else headers[:-1]
        for index, match in enumerate(complete):
            end = headers[index + 1].start() if index + 1 < len(headers) else len(buffer)
            commit = _commit_from_header(match)
            commit.files = _parse_files(buffer, match.end(), end)
            yield commit
        if not chunk:
            return
        if len(headers) > 1:
            buffer = buffer[headers[-1].start() :]


def parse_git_diff(data: bytes) -> list[FileDiff]:
    """The file diffs of one ``git diff``-family output (the format the walk reads), so
    a review parses hunks exactly as mining did."""
    return _parse_files(data, 0, len(data))


def _parse_files(data: bytes, start: int, end: int) -> list[FileDiff]:
    starts = [m.start() for m in _FILE_START.finditer(data, start, end)]
    files = []
    for index, file_start in enumerate(starts):
        file_end = starts[index + 1] if index + 1 < len(starts) else end
        files.append(_parse_file(data, file_start, file_end))
    return files


def _parse_file(data: bytes, start: int, end: int) -> FileDiff:
    """One file's diff. Bytes git can print but a reviewer cannot learn from mark the file
    instead of failing the walk: a NUL anywhere (binary), invalid UTF-8 (undecodable), a
    header that does not parse or hunks whose lines disagree with their counts, as in a
    diff cut short (malformed)."""
    first_hunk = _HUNK_START.search(data, start, end)
    header_end = first_hunk.start() if first_hunk else end
    header = data[start:header_end].split(b"\n")
    try:
        file = _file_from_diff_line(header[0])
        _read_header(file, header[1:])
    except (ValueError, IndexError):  # an unbalanced quote, a bad octal escape
        return FileDiff(path="", old_path="", status="M", malformed=True)
    if first_hunk is None:
        return file
    file.size = end - header_end
    if data.find(b"\x00", header_end, end) >= 0:
        file.binary = True
        return file
    old_path = file.old_path if file.old_path != file.path else None
    heads = list(_HUNK_START.finditer(data, header_end, end))
    for index, head in enumerate(heads):
        body_end = heads[index + 1].start() if index + 1 < len(heads) else end
        raw = data[head.end() : body_end]
        try:
            text = raw.decode("utf-8")
            heading = head.group(5).decode("utf-8")
        except UnicodeDecodeError:
            file.undecodable = True
            text = raw.decode("utf-8", "replace")
            heading = head.group(5).decode("utf-8", "replace")
        # git ends every line it prints; a body that does not end so was cut short.
        complete = text.endswith("\n")
        text = text[:-1] if complete else text
        old_start, old_len, new_start, new_len = head.group(1, 2, 3, 4)
        hunk = Hunk(
            path=file.path,
            old_start=int(old_start),
            old_len=1 if old_len is None else int(old_len),
            new_start=int(new_start),
            new_len=1 if new_len is None else int(new_len),
            lines=tuple(text.split("\n")) if text else (),
            header=heading,
            old_path=old_path,
        )
        if not (complete and _counts_agree(text, hunk.old_len, hunk.new_len)):
            file.malformed = True
            file.hunks = []
            return file
        file.hunks.append(hunk)
    return file


def _counts_agree(text: str, old_len: int, new_len: int) -> bool:
    """Whether a hunk body has exactly the lines its ``@@`` header announces, each with a
    diff prefix (counted in C, not line by line: this runs for every hunk of the walk)."""
    body = "\n" + text if text else ""
    context, deleted, added = body.count("\n "), body.count("\n-"), body.count("\n+")
    markers = body.count("\n\\")
    return (
        context + deleted == old_len
        and context + added == new_len
        and context + deleted + added + markers == body.count("\n")
    )


def _read_header(file: FileDiff, lines: list[bytes]) -> None:
    """Status, paths and kind from the lines between ``diff --git`` and the first hunk."""
    for raw in lines:
        if raw.startswith(b"--- "):
            if raw != b"--- /dev/null":
                file.old_path = _path(raw[4:], b"a/")
        elif raw.startswith(b"+++ "):
            if raw != b"+++ /dev/null":
                file.path = _path(raw[4:], b"b/")
        elif raw.startswith(b"new file mode"):
            file.status = "A"
            file.submodule = raw.endswith(b"160000")
        elif raw.startswith(b"deleted file mode"):
            file.status = "D"
            file.submodule = raw.endswith(b"160000")
        elif raw.startswith(b"rename from "):
            file.old_path = _path(raw[12:], b"")
            file.status = "R"
        elif raw.startswith(b"rename to "):
            file.path = _path(raw[10:], b"")
            file.status = "R"
        elif raw.startswith(b"index ") and raw.endswith(b" 160000"):
            file.submodule = True
        elif raw.startswith(b"Binary files ") or raw == b"GIT binary patch":
            file.binary = True


def _commit_from_header(match: re.Match) -> Commit:
    sha, parents, author_time, commit_time, author_date, message = match.groups()
    return Commit(
        sha=sha.decode(),
        parents=tuple(parents.decode().split()),
        author_time=int(author_time),
        commit_time=int(commit_time),
        author_date=author_date.decode("utf-8", "replace"),
        message=message.decode("utf-8", "replace").strip("\n"),
    )


def _file_from_diff_line(raw: bytes) -> FileDiff:
    # "diff --git a/X b/Y": ambiguous with spaces; ---/+++ or rename lines refine it.
    body = raw[len(b"diff --git ") :]
    if body.startswith(b'"'):
        end = body.index(b'"', 1)
        while body[end - 1 : end] == b"\\":
            end = body.index(b'"', end + 1)
        old, new = body[: end + 1], body[end + 2 :]
    else:
        half = (len(body) - 1) // 2
        old, new = body[:half], body[half + 1 :]
        if not (old.startswith(b"a/") and new.startswith(b"b/") and old[2:] == new[2:]):
            split = body.find(b" b/")
            old, new = body[:split], body[split + 1 :]
    old_path, new_path = _path(old, b"a/"), _path(new, b"b/")
    return FileDiff(path=new_path, old_path=old_path, status="M")
