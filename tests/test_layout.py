"""The house rules of docs/architecture.md, checked on the source: small modules and functions, no import circle
between files or between rooms, and rooms that import each other only through their `__init__`."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "autotune"
ROOMS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 450, 80


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def room(module: str) -> str:
    """`autotune.search.study` -> `search`; a top-level module is a room of its own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else module


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, imported names, line) of every `autotune` import, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("autotune"):
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("autotune")]
    return found


def edges() -> dict[str, set[str]]:
    """File -> the files it imports (`from autotune.x import y` names module x.y when that is a module)."""
    out: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        for module, names, _ in imports(path):
            targets = [f"{module}.{n}" if f"{module}.{n}" in MODULES else module for n in names] or [module]
            out[name] |= {t for t in targets if t in MODULES and t != name}
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("folder", ["autotune", "tests", "benchmarks"])
def test_modules_and_functions_stay_small(folder):
    too_long = []
    for path in sorted((REPO / folder).rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}(): {length} lines")
    assert too_long == []


def test_no_import_circle_between_files_or_rooms():
    graph = edges()
    assert cycles(graph) == []
    rooms: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        rooms[room(a)] |= {room(b) for b in targets if room(b) != room(a)}
    assert cycles(rooms) == []


def test_rooms_import_each_other_only_through_their_init():
    """From outside a room, only `from autotune.<room> import <name>` (its public surface, named in `__all__`)."""
    leaks = []
    for name, path in MODULES.items():
        for module, names, line in imports(path):
            target = room(module)
            if target not in ROOMS or target == room(name):
                continue
            surface = __import__(f"autotune.{target}", fromlist=["__all__"]).__all__
            if module != f"autotune.{target}" or any(n not in surface for n in names):
                leaks.append(f"{path.relative_to(REPO)}:{line} imports {module} {names}")
    assert leaks == []


def test_the_checks_can_fail():
    """The circle finder finds a circle, and the size rule counts what it should (guards against a vacuous pass)."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert room("autotune.search.study") == "search" and room("autotune.sla") == "autotune.sla"
    assert "autotune.search.study" in MODULES and edges()["autotune.search.study"]
