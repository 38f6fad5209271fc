"""Server settings: typed and validated, later layers override earlier ones, a bad value is
named with its default, unknown keys are ignored; and the exclude globs."""

from __future__ import annotations

import pytest
from lsprotocol.types import DiagnosticSeverity

from server.settings import Settings, merge
from training.config import excluded


def test_defaults_follow_the_contract() -> None:
    settings, problems, unknown = merge([])
    assert settings == Settings()
    # threshold None: the bundle's own (Engine.default_threshold)
    assert (settings.bundle, settings.device, settings.threshold) == (None, "auto", None)
    assert (settings.diff_base, settings.comments) == ("HEAD", True)
    assert settings.severity == "information"
    assert settings.diagnostic_severity == DiagnosticSeverity.Information
    assert 0 < settings.debounce_ms <= 1000 and settings.max_new_tokens > 0
    assert settings.exclude == ()
    assert problems == [] and unknown == []


def test_later_layers_override_and_null_or_empty_keep_the_earlier_value() -> None:
    settings, problems, _ = merge(
        [
            {"bundle": "/b", "threshold": 0.3, "diffBase": "origin/main"},
            {"bundle": None, "threshold": 0.7, "diffBase": ""},
        ]
    )
    assert problems == []
    assert (settings.bundle, settings.threshold, settings.diff_base) == ("/b", 0.7, "origin/main")


@pytest.mark.parametrize(
    ("raw", "field", "value"),
    [
        ({"severity": "Warning"}, "severity", "warning"),
        ({"severity": "info"}, "severity", "information"),
        ({"exclude": "*.md"}, "exclude", ("*.md",)),
        ({"exclude": ["a/**", "b.py"]}, "exclude", ("a/**", "b.py")),
        ({"debounceMs": 50.0}, "debounce_ms", 50),
        ({"device": "CUDA:1"}, "device", "cuda:1"),
        ({"threshold": 1}, "threshold", 1.0),
        ({"comments": False}, "comments", False),
        ({"diffBase": "INDEX"}, "uses_index", True),
        ({"diffBase": ":"}, "uses_index", True),
        ({"diffBase": "origin/main"}, "uses_index", False),
    ],
)
def test_values_are_converted(raw: dict, field: str, value: object) -> None:
    settings, problems, _ = merge([raw])
    assert problems == []
    assert getattr(settings, field) == value


FIELDS = {
    "threshold": "threshold",
    "severity": "severity",
    "debounceMs": "debounce_ms",
    "maxNewTokens": "max_new_tokens",
    "comments": "comments",
    "device": "device",
    "diffBase": "diff_base",
    "exclude": "exclude",
    "bundle": "bundle",
    "engine": "engine",
    "engineModel": "engine_model",
}


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("threshold", "high", "between 0 and 1"),
        ("threshold", 1.5, "between 0 and 1"),
        ("threshold", True, "between 0 and 1"),
        ("threshold", float("nan"), "between 0 and 1"),
        ("severity", "loud", "error, warning, information, hint"),
        ("debounceMs", -5, "from 0 to 10000"),
        ("maxNewTokens", 0, "from 1 to 4096"),
        ("comments", "yes", "true or false"),
        ("device", "tpu", "auto, cpu"),
        ("diffBase", "--output=x", "revision"),
        ("diffBase", "two words", "without spaces"),
        ("exclude", [1, 2], "list of glob patterns"),
        ("bundle", 3, "path"),
        ("engine", "gpu-box:8000", "http(s) URL"),
        ("engine", 8000, "http(s) URL"),
        ("engineModel", "rnp", "{task}"),
    ],
)
def test_a_bad_value_is_named_and_its_default_used(key: str, value: object, words: str) -> None:
    settings, problems, _ = merge([{"threshold": 0.2}, {key: value}])
    (problem,) = problems
    assert problem.key == key
    assert f"`hunkwise.{key}`" in problem.message
    assert words in problem.message
    assert "using the default" in problem.message
    field = FIELDS[key]
    assert getattr(settings, field) == getattr(Settings(), field)  # not the earlier layer's


def test_an_unset_default_is_named_in_words() -> None:
    (problem,) = merge([{"threshold": "high"}])[1]
    assert problem.message.endswith("using the default, the bundle's threshold")
    (problem,) = merge([{"bundle": 3}])[1]
    assert problem.message.endswith("using the default, the repository's default bundle")


def test_unknown_keys_are_reported_not_fatal() -> None:
    settings, problems, unknown = merge([{"threshold": 0.4, "colour": "blue"}])
    assert settings.threshold == 0.4 and problems == [] and unknown == ["colour"]


@pytest.mark.parametrize(
    ("path", "globs", "hit"),
    [
        ("docs/a.md", ["*.md"], True),
        ("a.md", ["*.md"], True),
        ("build/x/y.py", ["build/**"], True),
        ("build/x/y.py", ["build/"], True),
        ("src/a/b.py", ["src/*.py"], False),
        ("src/b.py", ["src/*.py"], True),
        ("lib/vendor/x.js", ["**/vendor/**"], True),
        ("a.py", ["{a,b}.py"], True),
        ("c.py", ["{a,b}.py"], False),
        ("b.py", ["[ab].py"], True),
        ("c.py", ["[!ab].py"], True),
        ("app.min.js", ["*.min.js", "*.lock"], True),
        ("app.js", ["*.min.js"], False),
        # git's wildmatch rules (pathspec): a leading "/" anchors, a later "!" takes back
        ("setup.py", ["/setup.py"], True),
        ("src/setup.py", ["/setup.py"], False),
        ("docs/keep.md", ["*.md", "!keep.md"], False),
        ("a/b.py", ["{a,c}/*.py"], True),
    ],
)
def test_exclude_globs(path: str, globs: list[str], hit: bool) -> None:
    assert excluded(path, globs) is hit
