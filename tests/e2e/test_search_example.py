"""The search example (config/examples/search_membrane.yaml) at tiny scale on the ISBI 2012
stack: 9 candidates, rungs of 1 and 3 epochs at eta 3 (tests/example_runs.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_remap import tree_digest

from conftest import copy_workflow, planned_rules
from example_runs import load_example, run_example, tiny

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

NAME = "search_membrane"


def read_rung(path: Path) -> pd.DataFrame:
    """A rung file with its promoted column (yes/no) as booleans."""
    rung = pd.read_csv(path)
    assert set(rung["promoted"]) <= {"yes", "no"}, rung
    return rung.assign(promoted=rung["promoted"] == "yes")


def test_search_example_promotes_and_publishes_only_the_winner(shared_data, tmp_path):
    isbi = shared_data / "isbi2012_membrane" / "train"
    before = tree_digest(isbi)
    shipped = load_example(NAME)
    assert shipped["search"] == {"min_epochs": 2, "max_epochs": 18, "eta": 3}
    assert shipped["train"]["epochs"] == shipped["search"]["max_epochs"]
    cfg = tiny(shipped, root=str(isbi))
    cfg["search"] = {"min_epochs": 1, "max_epochs": 3, "eta": 3}  # rungs of 1 and 3 epochs
    work = copy_workflow(tmp_path / "work")
    results = run_example(work, NAME, cfg, "results/search/rung1.csv")

    rung0, rung1 = (read_rung(results / "search" / f"rung{r}.csv") for r in (0, 1))
    assert list(rung0.columns) == ["candidate", "rung", "epochs", "val_miou", "promoted"]
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
    targets = ("results/search/rung1.csv", metrics)
    assert planned_rules(work, "--configfile", config, "--", *targets) == {}
    assert tree_digest(isbi) == before
