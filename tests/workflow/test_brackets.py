"""Hyperband brackets of a search (segpipe.workflow.brackets): which rungs each bracket runs,
the schema's search.brackets and the brackets that cannot run."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.workflow.brackets import bracket_problems, bracket_rungs, ladder
from segpipe.workflow.config import ConfigError, load_schema, validate_config
from segpipe.workflow.search import Search, parse_search, rung_count

from helpers.repo import REPO, copy_workflow, snakemake

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())


def test_brackets_start_one_rung_later_each_on_one_ladder() -> None:
    search = Search(min_epochs=1, max_epochs=27, eta=3, brackets=2)
    assert ladder(search) == [1, 3, 9, 27]
    assert bracket_rungs(search) == [[0, 1, 2, 3], [1, 2, 3]]
    three = Search(min_epochs=2, max_epochs=54, eta=3, brackets=3)
    assert [[ladder(three)[r] for r in rungs] for rungs in bracket_rungs(three)] == [
        [2, 6, 18, 54],
        [6, 18, 54],
        [18, 54],
    ]
    assert bracket_rungs(Search(min_epochs=1, max_epochs=9)) == [[0, 1, 2]]


def brackets_of(search: dict) -> int:
    cfg = validate_config({**TINY, "search": search}, SCHEMA, check_models=False)
    return parse_search(cfg["search"]).brackets


def test_the_section_defaults_to_one_bracket_and_refuses_fewer() -> None:
    budget = {"min_epochs": 1, "max_epochs": 9}
    assert brackets_of(budget) == 1 and brackets_of({**budget, "brackets": 2}) == 2
    for bad in (0, -1, 1.5, "two"):
        with pytest.raises(ConfigError, match="config option 'search.brackets"):
            brackets_of({**budget, "brackets": bad})


@pytest.mark.parametrize(
    ("low", "high", "eta", "brackets", "most"),
    [(1, 9, 3, 3, 2), (1, 9, 3, 7, 2), (1, 27, 3, 4, 3), (1, 4, 2, 3, 2), (2, 6, 3, 2, 1)],
)
def test_a_bracket_that_would_start_at_the_last_rung_is_refused(
    low, high, eta, brackets, most
) -> None:
    search = Search(min_epochs=low, max_epochs=high, eta=eta, brackets=brackets)
    (line,) = bracket_problems(search)
    assert line.startswith(f"config option 'search.brackets': {brackets} brackets over the ")
    assert f"the full grid); use at most {most}," in line and "\n" not in line
    assert bracket_problems(Search(min_epochs=low, max_epochs=high, eta=eta, brackets=most)) == []


def test_brackets_leave_bad_budgets_to_the_search_problems() -> None:
    assert bracket_problems(None) == []
    assert bracket_problems(Search(min_epochs=4, max_epochs=6, eta=3, brackets=3)) == []
    assert bracket_problems(Search(min_epochs=9, max_epochs=9, eta=3, brackets=2)) == []


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 20), st.integers(2, 400), st.integers(2, 5), st.integers(1, 6))
def test_every_bracket_that_runs_halves_at_least_once(low, high, eta, brackets) -> None:
    search = Search(min_epochs=low, max_epochs=high, eta=eta, brackets=brackets)
    rungs = rung_count(low, high, eta)
    if low >= high or rungs < 2:
        return
    assert (bracket_problems(search) == []) == (brackets <= rungs - 1)
    if bracket_problems(search):
        return
    budgets = ladder(search)
    for bracket, numbers in enumerate(bracket_rungs(search)):
        assert numbers[0] == bracket and numbers[-1] == rungs - 1 and len(numbers) >= 2
        assert budgets[numbers[0]] == low * eta**bracket  # geometric first budgets
        assert budgets[numbers[-1]] == high


@pytest.mark.slow
def test_too_many_brackets_fail_before_any_job_runs(tmp_path) -> None:
    work = copy_workflow(tmp_path)
    (work / "config" / "search.yaml").write_text(
        yaml.safe_dump(
            {
                "grid": {"train.lr": [0.001, 0.003, 0.01]},
                "search": {"min_epochs": 1, "max_epochs": 9, "brackets": 3},
                "train": {"warmup_epochs": 0},
            }
        )
    )
    proc = snakemake(work, "-n", "--configfile", "config/test.yaml", "config/search.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "config option 'search.brackets': 3 brackets over the 3 rungs 1 -> 3 -> 9" in out
    assert not (work / "results").exists()
