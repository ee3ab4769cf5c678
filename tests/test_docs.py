"""The fault model (docs/faults.md) names a test for every case: each name must be a test that
exists, so that the table cannot drift from the suite."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULTS = REPO / "docs" / "faults.md"
# `test_x.py::test_name` or, continuing the previous file in the same cell, `::test_name`
REFERENCE = re.compile(r"`(test_\w+\.py)?::(test_\w+)`")
LINK = re.compile(r"\]\(\.\./tests/(test_\w+\.py)\)")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def faults_references() -> list[tuple[int, str, str]]:
    """(line, test file, function) for every test that docs/faults.md names."""
    refs = []
    for number, line in enumerate(FAULTS.read_text(encoding="utf-8").splitlines(), start=1):
        current = None
        for match in REFERENCE.finditer(line):
            current = match.group(1) or current
            assert current, f"docs/faults.md:{number}: '::{match.group(2)}' names no test file"
            refs.append((number, current, match.group(2)))
    return refs


def test_every_test_the_fault_model_names_exists():
    refs = faults_references()
    assert len(refs) > 50
    functions: dict[str, set[str]] = {}
    missing = []
    for number, file, name in refs:
        path = REPO / "tests" / file
        if file not in functions:
            functions[file] = _test_functions(path) if path.is_file() else set()
        if name not in functions[file]:
            missing.append(f"docs/faults.md:{number}: tests/{file}::{name}")
    assert not missing, "named tests that do not exist:\n" + "\n".join(missing)


def test_every_test_file_the_fault_model_links_exists():
    linked = LINK.findall(FAULTS.read_text(encoding="utf-8"))
    assert linked
    assert [f for f in linked if not (REPO / "tests" / f).is_file()] == []


def test_the_new_test_modules_of_the_fault_model_are_named_in_it():
    """The modules written for the fault model appear in it (a test added there is listed)."""
    named = {file for _, file, _ in faults_references()} | set(
        LINK.findall(FAULTS.read_text(encoding="utf-8"))
    )
    for module in ("test_dataset_files.py", "test_duplicates_and_sizes.py"):
        assert module in named
        assert _test_functions(REPO / "tests" / module) <= {
            name for _, file, name in faults_references() if file == module
        }, f"a test of tests/{module} is missing from docs/faults.md"
