"""The package's structure: no import cycles among its modules, and one list of each config
choice, the one config/schema.yaml's enum equals."""

from __future__ import annotations

import ast
import importlib
from collections import deque
from pathlib import Path

import pytest

from segpipe.config import load_schema

from conftest import REPO

PACKAGE = REPO / "src" / "segpipe"


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports never run."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(node: ast.AST, package: str, module: str, modules: set[str]) -> set[str]:
    """The package's modules one import statement imports (``package.x``, ``from package
    import x``, ``from .x import y``, ``from . import x``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            # Relative to the package (modules are top-level files of it).
            base = ".".join([package, *filter(None, [node.module])])
        else:
            base = node.module or ""
        names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    else:
        return set()
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == package and len(parts) > 1 and parts[1] in modules:
            found.add(parts[1])
    return found - {module}


def import_graph(folder: Path) -> dict[str, dict[str, int]]:
    """Module -> {imported module: line} for the modules of the package in ``folder``, counting
    imports at module level and inside functions (``if TYPE_CHECKING:`` blocks left out)."""
    package = folder.name
    modules = {path.stem for path in folder.glob("*.py")}
    graph: dict[str, dict[str, int]] = {}
    for path in sorted(folder.glob("*.py")):
        module = path.stem
        edges: dict[str, int] = {}
        pending = [ast.parse(path.read_text(encoding="utf-8"), filename=str(path))]
        while pending:
            node = pending.pop()
            if _is_type_checking(node):
                pending.extend(node.orelse)
                continue
            for target in _imported(node, package, module, modules):
                edges[target] = min(edges.get(target, node.lineno), node.lineno)
            pending.extend(ast.iter_child_nodes(node))
        graph[module] = edges
    return graph


def _shortest_cycle(graph: dict[str, dict[str, int]], start: str) -> list[str] | None:
    """The shortest import path from ``start`` back to itself, or None."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for target in sorted(graph.get(module, {})):
            if target == start:
                path = [module]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if target not in parents:
                parents[target] = module
                queue.append(target)
    return None


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle per group of modules that import each other, each once."""
    cycles, seen = [], set()
    for module in sorted(graph):
        cycle = _shortest_cycle(graph, module)
        if cycle and frozenset(cycle) not in seen:
            seen.add(frozenset(cycle))
            cycles.append(cycle)
    return cycles


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    """``a.py:12 imports b -> b.py:40 imports a``."""
    return " -> ".join(
        f"{a}.py:{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:], strict=False)
    )


def test_no_import_cycles() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 10 and "remap" in graph["verify"]  # the package, read
    cycles = import_cycles(graph)
    assert not cycles, "import cycles in segpipe:\n  " + "\n  ".join(
        describe(c, graph) for c in cycles
    )


def test_function_level_import_cycle_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f():\n    from pkg.c import g\n    return g\n")
    (package / "c.py").write_text("def g():\n    from .a import b\n    return b\n")
    (package / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    graph = import_graph(package)
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
    assert graph["d"] == {}
    assert describe(["a", "b", "c", "a"], graph) == (
        "a.py:1 imports b -> b.py:2 imports c -> c.py:2 imports a"
    )


# config option -> (module, the list, dict or registry holding its choices)
CHOICES = {
    "train.loss": ("segpipe.models", "LOSSES"),
    "train.arch": ("segpipe.models", "ARCHITECTURES"),
    "train.scheduler": ("segpipe.train", "SCHEDULERS"),
    "train.log_to": ("segpipe.monitor", "LOGGERS"),
    "remap.unmapped": ("segpipe.remap", "UNMAPPED_POLICIES"),
    "dataset.layout": ("segpipe.datasets", "LAYOUTS"),
    "predict.mode": ("segpipe.inference", "MODES"),
    "predict.tta": ("segpipe.inference", "FLIPS"),
}


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema(REPO / "config" / "schema.yaml")


def schema_enum(schema: dict, option: str) -> list:
    """The enum of a dotted option (of its items, for a list option)."""
    node = schema
    for part in option.split("."):
        node = node["properties"][part]
    return node["enum"] if "enum" in node else node["items"]["enum"]


@pytest.mark.parametrize("option", sorted(CHOICES))
def test_schema_enum_equals_the_package_list(schema: dict, option: str) -> None:
    module, name = CHOICES[option]
    choices = getattr(importlib.import_module(module), name)
    assert len(set(choices)) == len(list(choices)), f"{module}.{name} lists a name twice"
    assert sorted(schema_enum(schema, option)) == sorted(choices), (
        f"config/schema.yaml's {option} enum differs from {module}.{name}"
    )


def test_layouts_and_split_lists_have_one_list_each(schema: dict) -> None:
    from segpipe.datasets import LAYOUT_DIRS, LAYOUT_LISTS, LAYOUTS, SPLIT_LISTS

    assert set(LAYOUT_DIRS) == set(LAYOUT_LISTS) == set(LAYOUTS)
    assert all(set(lists) <= set(SPLIT_LISTS) for lists in LAYOUT_LISTS.values())
    split_lists = schema["properties"]["dataset"]["properties"]["split_lists"]
    assert sorted(split_lists["properties"]) == sorted(SPLIT_LISTS)


MAX_FUNCTION_LINES = 90  # "fits on a screen": signature and docstring included


def test_no_function_in_the_package_is_longer_than_a_screen() -> None:
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these into named steps: " + ", ".join(long)
