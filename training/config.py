"""Settings a repository or a user gives hunkwise: the checks of every value (shared by the
language server's settings and the command line), the exclude globs, and the repository's
own configuration file.

A repository configures hunkwise in ``hunkwise.toml`` (top-level keys) or in
``pyproject.toml`` under ``[tool.hunkwise]`` (``hunkwise.toml`` wins when both exist),
with the language server's keys: ``bundle`` (relative to the file), ``device``,
``threshold``, ``diffBase``, ``exclude`` and the others of docs/architecture.md section 6.
The command line applies them under its options; the server under the editor's settings.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pathspec
import tomllib

from training.errors import HunkwiseError
from training.models import device_name

SECTION = "hunkwise"
CONFIG_FILE = "hunkwise.toml"
PYPROJECT = "pyproject.toml"

SEVERITY_NAMES: tuple[str, ...] = ("error", "warning", "information", "info", "hint")
MAX_DEBOUNCE_MS = 10_000
MAX_NEW_TOKENS = 4096
#: The most a user may set ``maxInstructionChars`` to: a prompt beyond it holds the model
#: for minutes.
MAX_INSTRUCTION_CHARS = 100_000


class BadValue(ValueError):
    """A setting's value cannot be used; the message says what it must be."""


def _bundle(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadValue("must be a path (a string)")
    return value


def _device(value: Any) -> str:
    try:
        return device_name(value)
    except ValueError as error:
        raise BadValue(str(error)) from None


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue("must be a number between 0 and 1")
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise BadValue("must be a number between 0 and 1")
    return float(value)


def _diff_base(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or value.strip().startswith("-"):
        raise BadValue('must be a revision such as "HEAD" or "origin/main", or "INDEX"')
    if any(char.isspace() or ord(char) < 32 for char in value.strip()):
        raise BadValue("must be a revision without spaces")
    return value.strip()


def _int_between(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise BadValue(f"must be a whole number from {low} to {high}")
        return value

    return check


def _comments(value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadValue("must be true or false")
    return value


def _severity(value: Any) -> str:
    if not isinstance(value, str) or value.strip().lower() not in SEVERITY_NAMES:
        raise BadValue("must be one of error, warning, information, hint")
    name = value.strip().lower()
    return "information" if name == "info" else name


def _exclude(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise BadValue("must be a list of glob patterns")
    return tuple(item for item in value if item)


def _engine(value: Any) -> str:
    from training.remote import check_url, is_local

    if not isinstance(value, str):
        raise BadValue("must be 'local' or an http(s) URL such as http://gpu-box:8000")
    if is_local(value):
        return "local"
    try:
        return check_url(value)
    except ValueError as error:
        raise BadValue(str(error)) from None


def _engine_model(value: Any) -> str:
    from training.remote import check_model_name

    try:
        return check_model_name(value)
    except ValueError as error:
        raise BadValue(str(error)) from None


#: camelCase key -> (dataclass field, converter)
FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "bundle": ("bundle", _bundle),
    "device": ("device", _device),
    "threshold": ("threshold", _threshold),
    "diffBase": ("diff_base", _diff_base),
    "debounceMs": ("debounce_ms", _int_between(0, MAX_DEBOUNCE_MS)),
    "maxNewTokens": ("max_new_tokens", _int_between(1, MAX_NEW_TOKENS)),
    "maxInstructionChars": (
        "max_instruction_chars",
        _int_between(1, MAX_INSTRUCTION_CHARS),
    ),
    "comments": ("comments", _comments),
    "severity": ("severity", _severity),
    "exclude": ("exclude", _exclude),
    "engine": ("engine", _engine),
    "engineModel": ("engine_model", _engine_model),
}
KEYS: tuple[str, ...] = tuple(FIELDS)

_BRACES = re.compile(r"\{([^{}]*)\}")


def _without_braces(glob: str) -> list[str]:
    """``{a,b}`` alternatives (editors' globs have them, git's do not) spelled out."""
    found = _BRACES.search(glob)
    if found is None:
        return [glob]
    head, tail = glob[: found.start()], glob[found.end() :]
    return [
        out for choice in found.group(1).split(",") for out in _without_braces(head + choice + tail)
    ]


@functools.lru_cache(maxsize=256)
def _exclude_spec(globs: tuple[str, ...]) -> pathspec.PathSpec:
    lines = [line for glob in globs for line in _without_braces(glob.strip()) if line]
    return pathspec.PathSpec.from_lines("gitignore", lines)


def excluded(relpath: str, globs: Sequence[str]) -> bool:
    """Does any of the ``hunkwise.exclude`` globs match this repository-relative path?
    They are git's wildmatch patterns (pathspec), as in ``.gitignore``: ``**`` crosses
    directories, ``*`` and ``?`` do not, ``[abc]``/``[!abc]`` choose, a pattern without
    "/" matches a name anywhere, and a directory pattern matches everything below it;
    and ``{a,b}`` chooses, as in editors' file-exclude settings."""
    return bool(globs) and _exclude_spec(tuple(globs)).match_file(relpath)


@dataclass(frozen=True)
class RepoConfig:
    """A repository's hunkwise configuration: the raw values by key, and where they came
    from (None: no configuration file)."""

    values: Mapping[str, Any]
    source: Path | None = None

    def checked(self) -> dict[str, Any]:
        """The values converted (camelCase key -> value), ``bundle`` made absolute against
        the file's directory; an unknown key or a bad value is a HunkwiseError naming it."""
        where = str(self.source) if self.source is not None else CONFIG_FILE
        if self.source is not None and self.source.name == PYPROJECT:
            where += f" [tool.{SECTION}]"
        out: dict[str, Any] = {}
        for key, value in self.values.items():
            if key not in FIELDS:
                raise HunkwiseError(
                    f"{where}: unknown key {key!r}; the keys are {', '.join(FIELDS)}"
                )
            try:
                out[key] = FIELDS[key][1](value)
            except BadValue as error:
                raise HunkwiseError(f"{where}: {key!r} {error} (got {value!r})") from None
        if out.get("bundle") and self.source is not None:
            out["bundle"] = str(self.source.parent / Path(out["bundle"]).expanduser())
        return out


def repo_layer(config: RepoConfig) -> dict[str, Any]:
    """The configuration as a settings layer for the language server: raw values (the
    server checks them like its other settings), ``bundle`` resolved against the file."""
    values = dict(config.values)
    bundle = values.get("bundle")
    if isinstance(bundle, str) and bundle and config.source is not None:
        values["bundle"] = str(config.source.parent / Path(bundle).expanduser())
    return values


def read_repo_config(root: Path) -> RepoConfig:
    """The configuration of the repository at ``root``: ``hunkwise.toml``, else
    ``pyproject.toml``'s ``[tool.hunkwise]``, else none. A file that is not TOML is a
    HunkwiseError naming it and the line."""
    for name in (CONFIG_FILE, PYPROJECT):
        path = Path(root) / name
        if not path.is_file():
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise HunkwiseError(f"cannot read {path}: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise HunkwiseError(f"{path} is not valid TOML: {error}") from None
        if name == PYPROJECT:
            tool = data.get("tool")
            data = tool.get(SECTION) if isinstance(tool, dict) else None
            if data is None:
                continue
            if not isinstance(data, dict):
                raise HunkwiseError(f"{path}: [tool.{SECTION}] must be a table")
        return RepoConfig(data, path)
    return RepoConfig({})
