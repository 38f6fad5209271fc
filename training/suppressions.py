"""Findings a user has silenced: a ``hunkwise: ignore`` comment in the code, and
dismissals that last, kept per repository in the user's cache directory and shared by
``hunkwise review`` and the language server's Dismiss."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from training.errors import HunkwiseError
from training.hunks import Hunk
from training.mining.filters import _C_STYLE, _COMMENT_PREFIXES
from training.tasks import RULE_ID

STORE_FORMAT = "hunkwise-dismissed/1"
_MARKER = re.compile(r"(?<![\w-])hunkwise:\s*ignore\b(\[[^\]]*\])?", re.IGNORECASE)
#: Comment prefixes that only count at the start of a line.
_LINE_ONLY = ("*", "*/", '"')
#: The rest of a block comment's line is the comment up to its closer.
_CLOSERS = {"/*": "*/", "<!--": "-->"}
#: What opens a string, where it is not the usual ``"``, ``'`` and backquote: markup holds
#: prose (an apostrophe opens nothing), a Lisp's ``'`` quotes a form, Rust's marks a
#: lifetime.
_QUOTES: dict[str | None, str] = {
    "html": "",
    "xml": "",
    "markdown": "",
    "elisp": '"',
    "clojure": '"',
    "rust": '"',
}
_HUNK_ID = re.compile(r"^[0-9a-f]{16}$")


# -- the marker --------------------------------------------------------------------------


def ignore_marker(hunk: Hunk, new_lines: Sequence[str] = ()) -> bool:
    """Whether a ``hunkwise: ignore`` comment suppresses ``hunk``.

    The marker counts on the hunk's first added line or on the new-side line just above it
    (a pure deletion: the line above the deleted lines), in any case, as
    ``hunkwise: ignore`` or ``hunkwise: ignore[review-needed]`` (a bracket that does not
    name the rule suppresses nothing), and only inside a comment of the file's language as
    the miner knows comments (``training.mining.filters``): a line that is a comment
    (``# hunkwise: ignore``, ``-- ...``, `` * ...`` inside a block comment, ``<!-- ...
    -->``), or a comment that ends a line of code (``x = eval(s)  # hunkwise: ignore``,
    ``f(); // hunkwise: ignore``, ``/* hunkwise: ignore */``) opened outside any string
    literal. A file of unknown kind takes ``#``, ``//`` and ``/* */``; one without comments
    (JSON, plain text, reStructuredText) takes none.

    ``new_lines``: the file's lines after the change, as far as known (the editor's buffer;
    a review's first lines of the file), read for the line above when the hunk does not
    hold it (a diff without context lines).
    """
    language = hunk.language
    first = next((i for i, line in enumerate(hunk.lines) if line[:1] == "+"), None)
    anchor = first
    if anchor is None:  # a pure deletion: only the line above it can carry the marker
        anchor = next((i for i, line in enumerate(hunk.lines) if line[:1] == "-"), None)
        if anchor is None:
            return False
    if first is not None and _marked(hunk.lines[first][1:], language):
        return True
    above = next((line[1:] for line in reversed(hunk.lines[:anchor]) if line[:1] == " "), None)
    if above is None:
        # "+N,0" names the line before a deletion; otherwise the hunk starts with its change.
        number = hunk.new_start if hunk.new_len == 0 else hunk.new_start - 1
        if not 1 <= number <= len(new_lines):
            return False
        above = new_lines[number - 1]
    return _marked(above, language)


def _marked(line: str, language: str | None) -> bool:
    """Whether ``line`` has a marker in a comment of ``language``."""
    if not _MARKER.search(line):  # the cheap test first: nearly every line fails it
        return False
    prefixes = _COMMENT_PREFIXES.get(language, _C_STYLE)
    # "*" and "*/" open no comment but start a line inside one; Vim's '"' opens a comment
    # only at the start of a line (elsewhere it opens strings too).
    line_only = tuple(p for p in prefixes if p in _LINE_ONLY)
    if line_only and line.lstrip().startswith(line_only):
        return _names_the_rule(line)
    inline = tuple(p for p in prefixes if p not in _LINE_ONLY)
    quotes = _QUOTES.get(language, "\"'`")
    quote: str | None = None
    index = 0
    while index < len(line):
        char = line[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in quotes:
            quote = char
        else:
            opener = next((p for p in inline if line.startswith(p, index)), None)
            if opener is not None:
                comment = _comment_text(line[index:], opener)
                if _names_the_rule(comment):
                    return True
                closer = _CLOSERS.get(opener)
                end = index + len(opener) + len(comment)
                if closer is None or not line.startswith(closer, end):
                    return False  # the comment runs to the end of the line
                index = end + len(closer)  # code again after a closed block comment
                continue
        index += 1
    return False


def _comment_text(text: str, opener: str) -> str:
    """The comment that ``text`` (starting with ``opener``) holds on this line, without
    its delimiters."""
    body = text[len(opener) :]
    closer = _CLOSERS.get(opener)
    return body.split(closer, 1)[0] if closer else body


def _names_the_rule(comment: str) -> bool:
    """Whether ``comment`` holds a marker that applies to the review rule."""

    for match in _MARKER.finditer(comment):
        rules = match.group(1)
        if rules is None or RULE_ID in (rule.strip().lower() for rule in rules[1:-1].split(",")):
            return True
    return False


# -- the dismissal store -----------------------------------------------------------------


@dataclass(frozen=True)
class Dismissal:
    """One dismissed hunk: its id, the path it was at, when (UTC, ISO 8601), and, when
    given, who dismissed it and why."""

    hunk_id: str
    path: str | None
    time: str
    by: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, str]:
        entry = {"path": self.path, "time": self.time, "by": self.by, "reason": self.reason}
        return {key: value for key, value in entry.items() if value is not None}


def check_hunk_id(text: str) -> str:
    """``text`` as a hunk id (16 hex digits: ``hunk_id`` in ``hunkwise review --format
    json``, the ``hunkwiseHunk/v1`` fingerprint in SARIF), or a HunkwiseError saying so."""
    value = text.strip().lower()
    if not _HUNK_ID.match(value):
        raise HunkwiseError(
            f"{text!r} is not a hunk id: give the 16 hex digits that `hunkwise review "
            "--format json` prints as hunk_id"
        )
    return value


def store_path(repo: Path) -> Path:
    """Where the dismissals of ``repo``'s history are kept:
    ``$XDG_CACHE_HOME/hunkwise/dismissed/<id>.json`` (or ``~/.cache``), ``id`` naming the
    history as the default bundle location does (the first 12 hex digits of its root
    commit, so every clone and worktree of one history shares it; a repository without
    commits: ``<name>-<hash of its path>``). Not beside the bundle, which a retrain
    replaces whole, and never inside the repository."""
    from training.bundle import cache_root, history_id, legacy_bundle_dir

    identity = history_id(Path(repo).expanduser())
    name = identity[:12] if identity is not None else legacy_bundle_dir(repo).name
    return cache_root() / "dismissed" / f"{name}.json"


class DismissalStore:
    """The dismissals of one repository, in one JSON file:
    ``{"format": "hunkwise-dismissed/1", "dismissed": {"<hunk id>": {"path", "time",
    "by"?, "reason"?}}}``.

    Writers hold a lock (a ``.lock`` file beside it) while they read, merge and replace
    the file (a temp file, then ``os.replace``), so the command line and the language
    server writing at once lose nothing, and a reader never sees half a file. A file that
    cannot be read is an empty store and one line in :attr:`problem`; the next write sets
    it aside as ``<name>.corrupt`` rather than losing it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        #: why the last read found no usable store (one line, for a warning), else None
        self.problem: str | None = None

    @classmethod
    def for_repo(cls, repo: Path) -> DismissalStore:
        """The store of ``repo``'s history (:func:`store_path`)."""
        return cls(store_path(repo))

    def read(self) -> dict[str, Dismissal]:
        """The dismissals by hunk id; none when there is no file yet, or it cannot be read
        (then :attr:`problem` says why)."""
        found, self.problem = self._load()
        return found

    def ids(self) -> frozenset[str]:
        """The dismissed hunk ids."""
        return frozenset(self.read())

    def dismiss(
        self,
        hunk_id: str,
        path: str | None = None,
        by: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Store a dismissal; False when that hunk was dismissed already (kept as it was)."""
        entry = Dismissal(check_hunk_id(hunk_id), path, _now(), by, reason)
        with self._writing() as found:
            if entry.hunk_id in found:
                return False
            found[entry.hunk_id] = entry
        return True

    def undismiss(self, hunk_id: str) -> bool:
        """Forget a dismissal; False when that hunk was not dismissed."""
        hunk_id = check_hunk_id(hunk_id)
        with self._writing() as found:
            return found.pop(hunk_id, None) is not None

    def _load(self) -> tuple[dict[str, Dismissal], str | None]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except (OSError, UnicodeDecodeError) as error:
            return {}, f"cannot read the dismissals in {self.path} ({error}); none are applied"
        except ValueError as error:
            return {}, f"{self.path} is not a dismissal store ({error}); none are applied"
        entries = data.get("dismissed") if isinstance(data, dict) else None
        if not isinstance(entries, dict) or data.get("format") != STORE_FORMAT:
            return (
                {},
                f"{self.path} is not a {STORE_FORMAT} file; none of its dismissals are applied",
            )
        found = {}
        for hunk_id, entry in entries.items():
            if isinstance(hunk_id, str) and _HUNK_ID.match(hunk_id) and isinstance(entry, dict):
                path, time, by, reason = (entry.get(k) for k in ("path", "time", "by", "reason"))
                if all(
                    value is None or isinstance(value, str) for value in (path, time, by, reason)
                ):
                    found[hunk_id] = Dismissal(hunk_id, path, time or "", by, reason)
        return found, None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[dict[str, Dismissal]]:
        """The stored dismissals, to change in place, written back on a normal exit; under
        the lock from the read to the replace."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(self.path.with_name(self.path.name + ".lock")):
                found, self.problem = self._load()
                before = dict(found)
                yield found
                if found != before:
                    if self.problem is not None and self.path.exists():
                        os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
                    self._replace(found)
        except OSError as error:
            raise HunkwiseError(
                f"cannot write the dismissals in {self.path} ({error.strerror or error}); "
                "check that the cache directory ($XDG_CACHE_HOME or ~/.cache) is writable"
            ) from error

    def _replace(self, found: dict[str, Dismissal]) -> None:
        document = {
            "format": STORE_FORMAT,
            "dismissed": {key: found[key].to_dict() for key in sorted(found)},
        }
        handle, temp = tempfile.mkstemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(document, out, indent=1, ensure_ascii=False)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file ``path`` (created if need be), held for the block."""
    with open(path, "a+b") as handle:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # waits up to 10 s
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
