"""The workflow's file patterns live in segpipe.workflow.paths alone, and the {size} wildcard's
encoder and decoder agree."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from segpipe.workflow import paths

from helpers.repo import REPO

PATTERNS_MODULE = REPO / "src/segpipe/workflow/paths.py"
# Where code spells paths: the rules, the package (reporting included) and the job scripts.
CODE = ["Snakefile", "rules/*.smk", "src/segpipe/**/*.py", "scripts/*.py"]
WRITTEN = re.compile(rf"\b({'|'.join(paths.WRITTEN)})/")


def path_literals(text: str) -> list[tuple[int, str]]:
    """(line, string) of every string literal of Python or Snakemake code that names a folder
    the pipeline writes (results/, logs/, benchmarks/); comments and docstrings (a string that
    is a statement of its own) are prose, left out."""
    found = []
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    skip = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT}
    meaningful = [t for t in tokens if t.type not in skip]
    for i, token in enumerate(meaningful):
        if token.type != tokenize.STRING or not WRITTEN.search(token.string):
            continue
        before = meaningful[i - 1].type if i else tokenize.NEWLINE
        after = meaningful[i + 1].type if i + 1 < len(meaningful) else tokenize.NEWLINE
        if before == tokenize.NEWLINE and after == tokenize.NEWLINE:
            continue  # a docstring
        found.append((token.start[0], token.string))
    return found


def test_no_path_literal_outside_the_patterns_module() -> None:
    files = sorted({p for pattern in CODE for p in REPO.glob(pattern)} - {PATTERNS_MODULE})
    assert len(files) > 50
    found = [
        f"{path.relative_to(REPO)}:{line}: {literal}"
        for path in files
        for line, literal in path_literals(path.read_text())
    ]
    assert not found, "paths spelled outside segpipe/workflow/paths.py:\n  " + "\n  ".join(found)


def test_the_report_templates_show_the_paths_they_are_given() -> None:
    templates = sorted(REPO.glob("src/segpipe/reporting/templates/*.j2"))
    assert templates
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in templates
        for number, line in enumerate(
            re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S).splitlines(), 1
        )
        if re.search(rf"\b{paths.RESULTS}/", line)
    ]
    assert not found, "paths spelled in the report templates:\n  " + "\n  ".join(found)


@pytest.mark.parametrize(
    "code",
    [
        'x = "results/runs/a"\n',
        "x = f'{root}/logs/{rule}.log'\n",
        'rule a:\n    output:\n        "benchmarks/a.tsv",\n',
        'rule a:\n    log: "logs/a.log"\n',
        'def f():\n    """Doc."""\n    return "results/x"\n',
    ],
)
def test_a_path_literal_is_found(code: str) -> None:
    assert len(path_literals(code)) == 1, code


@pytest.mark.parametrize(
    "code",
    [
        '"""Writes results/runs/<run>/."""\n',
        'def f():\n    """Writes results/x."""\n',
        "rule a:\n    '''Writes logs/a/.'''\n    output:\n        x,\n",
        "x = 1  # results/runs/<run>/\n",
        'x = "myresults/a"\n',
    ],
)
def test_prose_is_not_a_path_literal(code: str) -> None:
    assert path_literals(code) == [], code


@given(
    st.one_of(
        st.tuples(st.integers(1, 10_000), st.none()),
        st.tuples(st.just(0), st.floats(0.01, 8, allow_nan=False).map(lambda s: float(f"{s:g}"))),
    )
)
def test_the_size_wildcard_reads_back_what_it_writes(size: tuple[int, float | None]) -> None:
    image_size, scale = size
    written = paths.preprocess_size(image_size, scale)
    assert re.fullmatch(paths.SIZE_PATTERN, written), written
    assert paths.size_options(written) == (image_size, scale)


def test_sizes_as_the_rules_write_them() -> None:
    assert paths.preprocess_size(256, None) == "256"
    assert paths.preprocess_size(256, 0.5) == "x0.5"
    assert paths.size_options("x1") == (0, 1.0)
    assert paths.size_options("96") == (96, None)


def test_a_pattern_is_the_rule_s_pattern_or_a_job_s_file() -> None:
    assert paths.evaluated("metrics.json") == "results/runs/{model}/evaluate/{split}/metrics.json"
    assert paths.evaluated("per_class.csv", "evaluate_no_tta", "r/fold1", "val") == (
        "results/runs/r/fold1/evaluate_no_tta/val/per_class.csv"
    )
    assert paths.fold_manifest("val") == "results/folds/{splitting}/k{k}/fold{fold}/val.csv"
    assert paths.rung_file("best.pt", "a", 2) == "results/search/a/rung2/best.pt"
    assert paths.RUNG_FILE.format(bracket=1, rung=0) == "results/search/bracket1/rung0.csv"
    assert paths.log("train", "{model}") == "logs/train/{model}.log"
    assert paths.benchmark("split", "base") == "benchmarks/split/base.tsv"
    assert paths.relative(paths.report_file("report.html", "a"), paths.COMPARE_DIR) == (
        "../runs/a/report/report.html"
    )


def test_the_rules_read_their_patterns_from_the_module() -> None:
    rules = "".join(p.read_text() for p in sorted((REPO / "rules").glob("*.smk")))
    assert rules.count("paths.log(") >= 20 and rules.count("paths.benchmark(") >= 20
    assert Path(paths.__file__) == PATTERNS_MODULE
