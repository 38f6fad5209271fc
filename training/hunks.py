"""Diff hunks: the unit hunkwise reviews, rendered exactly as git prints them
(CodeReviewer's ``patch`` format). Hunks come from git's output (``training.gitio.log``),
from patch files (``training.gitio.patch``) and from two texts diffed the way ``git diff``
would (``training.xdiff``), so the model sees in the editor what it saw in training."""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass

NO_NEWLINE_MARKER = "\\ No newline at end of file"

# fmt: off
_LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".jsx": "javascript",
    ".mjs": "javascript", ".cjs": "javascript", ".ts": "typescript", ".tsx": "typescript",
    ".go": "go", ".java": "java", ".kt": "kotlin", ".kts": "kotlin", ".scala": "scala",
    ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp",
    ".hpp": "cpp", ".hh": "cpp", ".cs": "csharp", ".rb": "ruby", ".php": "php",
    ".swift": "swift", ".m": "objective-c", ".sh": "shell", ".bash": "shell", ".zsh": "shell",
    ".lua": "lua", ".pl": "perl", ".r": "r", ".jl": "julia", ".hs": "haskell", ".ex": "elixir",
    ".exs": "elixir", ".erl": "erlang", ".clj": "clojure", ".dart": "dart", ".sql": "sql",
    ".html": "html", ".htm": "html", ".css": "css", ".scss": "css", ".vue": "vue",
    ".md": "markdown", ".rst": "restructuredtext", ".txt": "text", ".json": "json",
    ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".ini": "ini", ".cfg": "ini",
    ".xml": "xml", ".proto": "protobuf", ".tf": "terraform", ".vim": "vim", ".el": "elisp",
}
_FILENAMES: dict[str, str] = {
    "Makefile": "make", "Dockerfile": "dockerfile", "CMakeLists.txt": "cmake",
    "Jenkinsfile": "groovy",
}
# fmt: on


def language_of(path: str) -> str | None:
    """A language name guessed from a path's file name or extension, or None."""
    name = posixpath.basename(path)
    if name in _FILENAMES:
        return _FILENAMES[name]
    return _LANGUAGES.get(posixpath.splitext(name)[1].lower())


def format_range(start: int, length: int) -> str:
    """One side of an ``@@`` header as git writes it (",1" is omitted)."""
    return str(start) if length == 1 else f"{start},{length}"


@dataclass(frozen=True)
class Hunk:
    """One hunk of a unified diff.

    ``lines`` are the diff's body lines with their prefix (``' '``, ``'+'``, ``'-'``, or the
    ``'\\ No newline at end of file'`` marker); ``path`` is the new path (the old one for a
    deleted file) and ``old_path`` the old one when it differs (a rename).
    """

    path: str
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: tuple[str, ...]
    header: str = ""
    old_path: str | None = None

    @property
    def language(self) -> str | None:
        return language_of(self.path)

    @property
    def header_line(self) -> str:
        head = f"@@ -{format_range(self.old_start, self.old_len)} +{format_range(self.new_start, self.new_len)} @@"
        return f"{head} {self.header}" if self.header else head

    @property
    def text(self) -> str:
        """The hunk as git prints it, header first, no trailing newline."""
        return "\n".join((self.header_line, *self.lines))

    @property
    def old_text(self) -> str:
        """The code on the old side: context and deleted lines, prefixes removed."""
        return "\n".join(line[1:] for line in self.lines if line[:1] in (" ", "-"))

    @property
    def new_text(self) -> str:
        """The code on the new side: context and added lines, prefixes removed."""
        return "\n".join(line[1:] for line in self.lines if line[:1] in (" ", "+"))

    @property
    def added(self) -> list[tuple[int, str]]:
        """(new-side line number, text) of each added line."""
        return self._numbered("+", self.new_start)

    @property
    def deleted(self) -> list[tuple[int, str]]:
        """(old-side line number, text) of each deleted line."""
        return self._numbered("-", self.old_start)

    def _numbered(self, tag: str, start: int) -> list[tuple[int, str]]:
        """Lines carrying ``tag``, numbered on their side (context lines count too)."""
        out = []
        number = start
        for line in self.lines:
            prefix = line[:1]
            if prefix == tag:
                out.append((number, line[1:]))
                number += 1
            elif prefix == " ":
                number += 1
        return out

    @property
    def id(self) -> str:
        """Content hash of the path and the hunk's body (not its position)."""
        digest = hashlib.sha256(self.path.encode("utf-8", "surrogatepass"))
        for line in self.lines:
            digest.update(b"\n")
            digest.update(line.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:16]
