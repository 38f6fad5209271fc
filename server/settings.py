"""The server's settings (section ``hunkwise``): a typed, validated dataclass built from
``initializationOptions`` and ``workspace/configuration`` answers. A bad value never stops
the server: it is reported by name and the setting's default is used."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lsprotocol.types import DiagnosticSeverity

SECTION = "hunkwise"

SEVERITIES: dict[str, DiagnosticSeverity] = {
    "error": DiagnosticSeverity.Error,
    "warning": DiagnosticSeverity.Warning,
    "information": DiagnosticSeverity.Information,
    "info": DiagnosticSeverity.Information,
    "hint": DiagnosticSeverity.Hint,
}

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
MAX_DEBOUNCE_MS = 10_000
MAX_NEW_TOKENS = 4096
#: The most a user may set ``maxInstructionChars`` to: a prompt beyond it holds the model
#: for minutes.
MAX_INSTRUCTION_CHARS = 100_000


@dataclass(frozen=True)
class Settings:
    """Every setting of docs/architecture.md section 6, with its default.

    ``bundle`` None means the default location for the workspace's repository
    (``training.bundle.default_bundle_dir``); ``threshold`` None means the bundle's own
    (``Engine.default_threshold``); ``diff_base`` is ``HEAD``, ``INDEX`` (or ``:``) for
    the staged version, or any revision such as ``origin/main``.
    """

    bundle: str | None = None
    device: str = "auto"
    threshold: float | None = None
    diff_base: str = "HEAD"
    debounce_ms: int = 300
    max_new_tokens: int = 128
    max_instruction_chars: int = 2000
    comments: bool = True
    severity: str = "information"
    exclude: tuple[str, ...] = field(default_factory=tuple)

    @property
    def diagnostic_severity(self) -> DiagnosticSeverity:
        return SEVERITIES[self.severity]

    @property
    def uses_index(self) -> bool:
        return self.diff_base.upper() == "INDEX" or self.diff_base == ":"


class BadValue(ValueError):
    """A setting's value cannot be used; the message says what it must be."""


def _bundle(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadValue("must be a path (a string)")
    return value


def _device(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE.match(value.strip().lower()):
        raise BadValue("must be auto, cpu, cuda, cuda:N or mps")
    return value.strip().lower()


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
    if not isinstance(value, str) or value.strip().lower() not in SEVERITIES:
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


#: camelCase key -> (dataclass field, converter)
_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
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
}
KEYS: tuple[str, ...] = tuple(_FIELDS)
#: How a message names a default that is "not set" (None).
_DEFAULT_WORDS = {
    "bundle": "the repository's default bundle",
    "threshold": "the bundle's threshold",
}


@dataclass(frozen=True)
class Problem:
    """One setting that could not be used."""

    key: str
    value: Any
    reason: str
    default: Any

    @property
    def message(self) -> str:
        shown = _short(self.value)
        default = _DEFAULT_WORDS.get(self.key) if self.default is None else None
        if default is None:
            value = list(self.default) if isinstance(self.default, tuple) else self.default
            default = _short(value)
        return (
            f"hunkwise: setting `{SECTION}.{self.key}` {self.reason} (got {shown}); "
            f"using the default, {default}"
        )


def _short(value: Any) -> str:
    import json

    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def merge(
    layers: list[Mapping[str, Any] | None],
) -> tuple[Settings, list[Problem], list[str]]:
    """Settings from ``layers`` (later ones override earlier ones; a key that is absent or
    null keeps the earlier value). Returns the settings, the values that could not be
    used (their default is used) and the unknown keys."""
    raw: dict[str, Any] = {}
    unknown: list[str] = []
    for layer in layers:
        if not isinstance(layer, Mapping):
            continue
        for key, value in layer.items():
            if key not in _FIELDS:
                unknown.append(str(key))
            elif value is not None and value != "":
                # null and "" mean "not set here": editors send them for unset settings
                raw[key] = value
    defaults = Settings()
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in raw.items():
        name, convert = _FIELDS[key]
        try:
            values[name] = convert(value)
        except BadValue as error:
            problems.append(Problem(key, value, str(error), getattr(defaults, name)))
    return dataclasses.replace(defaults, **values), problems, sorted(set(unknown))
