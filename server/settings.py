"""The server's settings (section ``hunkwise``): a typed, validated dataclass structured
by cattrs from ``initializationOptions`` and ``workspace/configuration`` answers. A bad value never stops
the server: it is reported by name and the setting's default is used."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cattrs
from cattrs.errors import ClassValidationError
from cattrs.gen import make_dict_structure_fn, override
from lsprotocol.types import DiagnosticSeverity

from training.config import FIELDS, SECTION

SEVERITIES: dict[str, DiagnosticSeverity] = {
    "error": DiagnosticSeverity.Error,
    "warning": DiagnosticSeverity.Warning,
    "information": DiagnosticSeverity.Information,
    "info": DiagnosticSeverity.Information,
    "hint": DiagnosticSeverity.Hint,
}


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
    #: "local" (this process loads the bundle) or the URL of an OpenAI-compatible engine
    engine: str = "local"
    engine_model: str = "{task}"

    @property
    def diagnostic_severity(self) -> DiagnosticSeverity:
        return SEVERITIES[self.severity]

    @property
    def uses_index(self) -> bool:
        return self.diff_base.upper() == "INDEX" or self.diff_base == ":"


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
            if key not in FIELDS:
                unknown.append(str(key))
            elif value is not None and value != "":
                # null and "" mean "not set here": editors send them for unset settings
                raw[key] = value
    defaults = Settings()
    problems: list[Problem] = []
    while True:
        try:
            return _CONVERTER.structure(raw, Settings), problems, sorted(set(unknown))
        except ClassValidationError as error:
            failed, unplaced = error.group_exceptions()
            if unplaced or not failed:  # not a value's check: a bug, not the user's
                raise
            for reason, note in failed:
                key = _KEY_OF[note.name]
                value = raw.pop(key)
                problems.append(Problem(key, value, str(reason), getattr(defaults, note.name)))


def _settings_converter() -> cattrs.Converter:
    """cattrs structuring of Settings from the camelCase keys of ``training.config.FIELDS``,
    each value through that key's check (the one the command line applies too)."""
    converter = cattrs.Converter(forbid_extra_keys=False)

    def checked(check: Callable[[Any], Any]) -> Callable[[Any, Any], Any]:
        return lambda value, _type: check(value)

    overrides = {
        name: override(rename=key, struct_hook=checked(check))
        for key, (name, check) in FIELDS.items()
    }
    converter.register_structure_hook(
        Settings, make_dict_structure_fn(Settings, converter, **overrides)
    )
    return converter


_CONVERTER = _settings_converter()
#: dataclass field -> camelCase key
_KEY_OF = {name: key for key, (name, _) in FIELDS.items()}
