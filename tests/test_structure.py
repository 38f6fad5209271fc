"""The house rules of docs/architecture.md's module map, checked on the source: no two
modules of the product import each other (directly or round a cycle, lazy imports
included), no server unit imports the assembly (server.server), and bench/ does not
import the tests."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules(*packages: str) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere in its body (function-level included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules("training", "server")
    return {
        name: {other for other in _imports(path) if other in modules and other != name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_modules_import_each_other() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_entry_point_imports_the_server_assembly() -> None:
    importers = sorted(name for name, deps in _graph().items() if "server.server" in deps)
    assert importers == ["server.__main__"]


def test_bench_does_not_import_the_tests() -> None:
    """A benchmark runs from a checkout without the test suite's helpers."""
    found = {
        path.name: sorted(name for name in _imports(path) if name.split(".")[0] == "tests")
        for path in (ROOT / "bench").rglob("*.py")
    }
    assert {name: deps for name, deps in found.items() if deps} == {}


def test_no_test_module_imports_another() -> None:
    """Shared builders live in helper modules (tests/untrained_bundle.py, training_records.py, ...) and conftest's
    fixtures, so every test module stands alone."""
    found = {
        path.name: sorted(
            name
            for name in _imports(path)
            if name.startswith(("tests.test_", "tests.conftest"))
            and name.split(".")[1] != path.stem
        )
        for path in (ROOT / "tests").glob("*.py")
    }
    assert {name: deps for name, deps in found.items() if deps} == {}
