"""The fault model (docs/faults.md) names a test for every case: each name must be a test that
exists, so that the table cannot drift from the suite."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULTS = REPO / "docs" / "faults.md"
# `test_x.py::test_name` or, continuing the previous file in the same cell, `::test_name`
REFERENCE = re.compile(r"`(test_\w+\.py)?::(test_\w+)`")
LINK = re.compile(r"\]\(\.\./tests/((?:\w+/)?test_\w+\.py)\)")


def _test_module(name: str) -> Path:
    """The test module of a file name: test files have one name each below tests/."""
    found = sorted((REPO / "tests").rglob(name))
    assert len(found) <= 1, f"two test files named {name}: {found}"
    return found[0] if found else REPO / "tests" / name


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
        path = _test_module(file)
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
    named = {file for _, file, _ in faults_references()} | {
        Path(link).name for link in LINK.findall(FAULTS.read_text(encoding="utf-8"))
    }
    for module in ("test_dataset_files.py", "test_duplicates_and_sizes.py", "test_outputs.py"):
        assert module in named
        assert _test_functions(_test_module(module)) <= {
            name for _, file, name in faults_references() if file == module
        }, f"a test of tests/{module} is missing from docs/faults.md"


def test_the_benchmark_figures_in_the_docs_are_the_committed_jsons():
    """Every marked figures block in the docs is what tools/performance_figures.py makes from
    tools/bench/results/ (rerun the script after committing a new JSON)."""
    from tools import performance_figures as figures

    stale = [
        str(path.relative_to(REPO))
        for path in figures.DOCS
        if figures.rewrite(path.read_text(encoding="utf-8")) != path.read_text(encoding="utf-8")
    ]
    assert not stale, f"stale benchmark figures in {stale}: run tools/performance_figures.py"


def test_every_benchmark_figure_is_in_the_docs_with_its_machine_and_date():
    from tools import performance_figures as figures

    shown = [name for path in figures.DOCS for name in figures.blocks(path.read_text("utf-8"))]
    assert sorted(set(shown)) == sorted(figures.FIGURES)
    for name, (file, _) in figures.FIGURES.items():
        record = json.loads((figures.RESULTS / file).read_text(encoding="utf-8"))
        text = " ".join(figures.figure(name).split())
        assert record["date"] in text and record["machine"] in text, name


def test_a_changed_record_changes_the_figures(tmp_path, monkeypatch):
    """The figures follow the JSON: a different demo record gives a different block."""
    from tools import performance_figures as figures

    record = json.loads((figures.RESULTS / "demo-cpu-2cores.json").read_text(encoding="utf-8"))
    record["leaderboard"][0]["val_miou"] = "0.5"
    record["date"] = "2027-01-01"
    (tmp_path / "demo-cpu-2cores.json").write_text(json.dumps(record), encoding="utf-8")
    before = figures.figure("demo")
    monkeypatch.setattr(figures, "RESULTS", tmp_path)
    after = figures.figure("demo")
    assert "validation mIoU 0.500" in after and "2027-01-01" in after and after != before
    doc = f"a\n<!-- figures:demo -->\n{before}<!-- /figures:demo -->\nb\n"
    assert figures.rewrite(doc) == f"a\n<!-- figures:demo -->\n{after}<!-- /figures:demo -->\nb\n"


def test_the_architecture_page_names_every_rule_and_module():
    """docs/architecture.md has a row per rule (rule -> script -> function -> module) and names
    every module of the package in its stage table."""
    page = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    text = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "rules").glob("*.smk"))
    text += (REPO / "Snakefile").read_text(encoding="utf-8")
    rules = set(re.findall(r"^rule (\w+):", text, re.M))
    rules |= set(re.findall(r"^use rule \w+ as (\w+)", text, re.M))
    rules -= {"all"}
    assert len(rules) > 10
    assert sorted(r for r in rules if f"`{r}`" not in page) == []
    package = REPO / "src" / "segpipe"
    modules = {p.relative_to(package).with_suffix("").as_posix() for p in package.rglob("*.py")}
    unnamed = []
    for module in sorted(modules):
        stage, _, name = module.rpartition("/")
        if name == "__init__":
            continue
        if stage and not re.search(rf"`{stage}/`[^\n]*\b{name}\b", page):
            unnamed.append(module)
        if not stage and f"`{name}`" not in page and f"`{name}.py`" not in page:
            unnamed.append(module)
    assert unnamed == [], "modules missing from docs/architecture.md"
