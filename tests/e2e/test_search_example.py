"""The search example (config/examples/search_membrane.yaml) at tiny scale on the ISBI 2012
stack: 9 candidates, rungs of 1 and 3 epochs at eta 3 (tests/helpers/example_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from segpipe.workflow.config import load_schema, validate_config
from segpipe.workflow.experiments import expand_runs
from segpipe.workflow.search import (
    parse_search,
    rung_budgets,
    rung_sizes,
    search_candidates,
    search_problems,
)

from helpers.example_runs import load_example, run_example, tiny
from helpers.remap import tree_digest
from helpers.repo import REPO, copy_workflow, planned_rules

NAME = "search_membrane"


def test_search_example_is_a_complete_valid_config():
    """Like the other examples (tests/e2e/test_examples.py): valid, complete, and a search that
    can run over its 9 grid candidates in rungs of 9, 3 and 1."""
    schema = load_schema(REPO / "config" / "schema.yaml")
    raw = load_example(NAME)
    cfg = validate_config(raw, schema)
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for section, value in default.items():
        assert section in raw, section
        if isinstance(value, dict) and section != "resources":
            assert set(value) <= set(raw[section]), section
    runs = [r.name for r in expand_runs(raw, cfg, lambda c: validate_config(c, schema))]
    assert len(runs) == 9
    assert search_problems(cfg, search_candidates(cfg, runs)) == []
    search = parse_search(cfg["search"])
    budgets = rung_budgets(search.min_epochs, search.max_epochs, search.eta)
    assert budgets == [2, 6, 18] and rung_sizes(9, search.eta, len(budgets)) == [9, 3, 1]


def read_rung(path: Path) -> pd.DataFrame:
    """A rung file with its promoted column (yes/no) as booleans."""
    rung = pd.read_csv(path)
    assert set(rung["promoted"]) <= {"yes", "no"}, rung
    return rung.assign(promoted=rung["promoted"] == "yes")


@pytest.mark.slow
@pytest.mark.shared_data
def test_search_example_promotes_and_publishes_only_the_winner(shared_data, tmp_path):
    isbi = shared_data / "isbi2012_membrane" / "train"
    before = tree_digest(isbi)
    shipped = load_example(NAME)
    assert shipped["search"] == {"min_epochs": 2, "max_epochs": 18, "eta": 3}
    assert shipped["train"]["epochs"] == shipped["search"]["max_epochs"]
    cfg = tiny(shipped, root=str(isbi))
    cfg["search"] = {"min_epochs": 1, "max_epochs": 3, "eta": 3}  # rungs of 1 and 3 epochs
    cfg["train"]["warmup_epochs"] = 0  # 1 would end with the 1-epoch rung (refused)
    work = copy_workflow(tmp_path / "work")
    results = run_example(work, NAME, cfg, "results/search/bracket0/rung1.csv")

    rung0, rung1 = (read_rung(results / "search" / "bracket0" / f"rung{r}.csv") for r in (0, 1))
    columns = ["candidate", "bracket", "rung", "epochs", "val_miou", "promoted"]
    assert list(rung0.columns) == columns
    assert len(rung0) == 9 and rung0["promoted"].sum() == 3 and set(rung0["epochs"]) == {1}
    promoted = set(rung0.loc[rung0["promoted"], "candidate"])
    assert set(rung1["candidate"]) == promoted and set(rung1["epochs"]) == {3}
    assert rung1["promoted"].sum() == 1
    for name in rung0["candidate"]:
        assert (results / "search" / name / "rung1").is_dir() == (name in promoted), name
    (winner,) = rung1.loc[rung1["promoted"], "candidate"]

    metrics = f"results/runs/{winner}/evaluate/test/metrics.json"
    run_example(work, NAME, cfg, metrics)
    assert (work / metrics).is_file()
    for name in set(rung0["candidate"]) - {winner}:
        assert not (results / "runs" / name).exists(), name
    config = f"config/examples/{NAME}.yaml"
    targets = ("results/search/bracket0/rung1.csv", metrics)
    assert planned_rules(work, "--configfile", config, "--", *targets) == {}
    assert tree_digest(isbi) == before
