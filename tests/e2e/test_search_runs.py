"""A successive-halving search end to end at tiny scale: three candidates (a grid over the
learning rate), eta 3, rungs of 1 and 3 epochs: who trains in which rung, the winner's full
pipeline, the stopped candidates' absence from the test split, and what a change reruns."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.dvc import dvc_stage
from helpers.repo import copy_workflow, planned_rules, snakemake

pytestmark = pytest.mark.slow
ARGS = ("--configfile", "config/test.yaml", "config/search.yaml")
CANDIDATES = ["lr-0.001", "lr-0.003", "lr-0.01"]
# No warm-up: config/config.yaml's 1-epoch warm-up would end where a 1-epoch rung ends (refused).
SEARCH = {
    "grid": {"train.lr": [0.001, 0.003, 0.01]},
    "search": {"min_epochs": 1, "max_epochs": 3},
    "train": {"warmup_epochs": 0},
}


def write_search(work: Path, search: dict) -> None:
    (work / "config" / "search.yaml").write_text(yaml.safe_dump(search))


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("search"))
    write_search(work, SEARCH)
    proc = snakemake(work, *ARGS, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work


@pytest.fixture
def work(done: Path, tmp_path: Path) -> Path:
    """A copy of the finished search (timestamps and Snakemake's records kept) to change."""
    shutil.copytree(done, tmp_path / "work", symlinks=True)
    return tmp_path / "work"


def rung(work: Path, r: int) -> pd.DataFrame:
    return pd.read_csv(work / "results" / "search" / "bracket0" / f"rung{r}.csv")


def test_each_rung_trains_only_what_the_last_one_promoted(done: Path) -> None:
    first, last = rung(done, 0), rung(done, 1)
    assert first["candidate"].tolist() == CANDIDATES and set(first["epochs"]) == {1}
    assert (first["promoted"] == "yes").sum() == 1  # ceil(3 / 3)
    (promoted,) = first.loc[first["promoted"] == "yes", "candidate"]
    assert last["candidate"].tolist() == [promoted] and last["promoted"].tolist() == ["yes"]
    assert last["epochs"].tolist() == [3]
    search = done / "results" / "search"
    assert sorted(p.name for p in (search / promoted).iterdir()) == ["rung0", "rung1"]
    for name in set(CANDIDATES) - {promoted}:
        assert [p.name for p in (search / name).iterdir()] == ["rung0"]


def test_the_winner_continues_its_schedule_and_gets_a_full_run(done: Path) -> None:
    (winner,) = rung(done, 1)["candidate"]
    log = (done / "logs" / "search_train" / winner / "rung1.log").read_text()
    assert (
        "at the end of epoch 1" in log
        and "continuing epochs 2..3 of a schedule planned for 3" in log
    )
    history = pd.read_csv(done / "results" / "runs" / winner / "train" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]  # each epoch once
    run = done / "results" / "runs" / winner
    for split in ("val", "test"):
        assert (run / "evaluate" / split / "metrics.json").is_file()
    assert (run / "report" / "report.html").is_file()
    assert (done / "results" / "search" / "report.html").is_file()
    # Its report reads the benchmarks of the jobs that trained it: its rungs, then search_winner.
    report_log = (done / "logs" / "report" / f"{winner}.log").read_text()
    assert "benchmark file" not in report_log, report_log
    html = (run / "report" / "report.html").read_text()
    assert "search_train (rung 1)" in html and "search_winner" in html
    # Stopped candidates never reach the test split: no run folder at all.
    runs = sorted(p.name for p in (done / "results" / "runs").iterdir())
    assert runs == [winner]


def test_a_finished_search_reruns_nothing(done: Path) -> None:
    assert planned_rules(done, *ARGS) == {}


def test_a_new_candidate_trains_in_rung_0_and_redecides_it(work: Path) -> None:
    """No epoch trained before is trained again: the new candidate trains in rung 0, the rungs
    are decided again (4 candidates: 2 promoted), and only a newly promoted one trains on."""
    before = set(rung(work, 1)["candidate"])
    write_search(work, {**SEARCH, "grid": {"train.lr": [0.001, 0.003, 0.01, 0.0003]}})
    proc = snakemake(work, *ARGS, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-6000:]
    trained = set(
        re.findall(
            r"rule search_train:\n(?:    .*\n)*?    wildcards: run=([^,]+), rung=(\d)",
            proc.stdout + proc.stderr,
        )
    )
    first = rung(work, 0)
    assert first["candidate"].tolist() == [*CANDIDATES, "lr-0.0003"]
    assert (first["promoted"] == "yes").sum() == 2
    promoted = set(first.loc[first["promoted"] == "yes", "candidate"])
    assert trained == {("lr-0.0003", "0")} | {(name, "1") for name in promoted - before}
    assert set(rung(work, 1)["candidate"]) == promoted
    assert planned_rules(work, *ARGS) == {}


def test_a_longer_search_retrains_on_the_longer_schedule(work: Path) -> None:
    """Raising max_epochs changes the learning rate of every epoch of a cosine schedule, so
    every rung trains again; the data steps do not."""
    write_search(work, {**SEARCH, "search": {"min_epochs": 1, "max_epochs": 9}})
    planned = planned_rules(work, *ARGS)
    assert planned.get("search_train") == 3 and "preprocess" not in planned


def test_with_a_constant_rate_a_longer_search_adds_a_rung(tmp_path: Path) -> None:
    """A constant learning rate does not depend on the schedule's length: raising max_epochs
    keeps every rung trained so far and adds the next one for the survivor."""
    work = copy_workflow(tmp_path / "constant")
    constant = {**SEARCH, "train": {"scheduler": "constant"}}
    write_search(work, constant)
    proc = snakemake(work, *ARGS, "--cores", "2", "results/search/bracket0/rung1.csv")
    assert proc.returncode == 0, proc.stderr[-6000:]
    write_search(work, {**constant, "search": {"min_epochs": 1, "max_epochs": 9}})
    proc = snakemake(work, *ARGS, "--cores", "2", "results/search/bracket0/rung2.csv")
    assert proc.returncode == 0, proc.stderr[-6000:]
    ran = proc.stdout + proc.stderr
    assert "search_train" in ran and "wildcards: run=lr-0.001, rung=0" not in ran
    (survivor,) = rung(work, 1).loc[lambda t: t["promoted"] == "yes", "candidate"]
    assert rung(work, 2)["candidate"].tolist() == [survivor]
    assert sorted(p.name for p in (work / "results" / "search" / survivor).iterdir()) == [
        "rung0",
        "rung1",
        "rung2",
    ]


def test_dvc_records_the_rungs_and_the_winners_metrics(work: Path) -> None:
    """With the search in config/config.yaml, dvc.yaml (generated from the DAG once the rungs
    are decided) versions every rung's file and holds the winner's scores as metrics."""
    stage = dvc_stage(work)
    outs = [next(iter(entry)) for entry in stage["outs"]]
    metrics = [next(iter(entry)) for entry in stage["metrics"]]
    (winner,) = rung(work, 1)["candidate"]
    rungs = {f"results/search/bracket0/rung{r}.csv" for r in (0, 1)}
    assert rungs | {"results/search/winner.csv"} <= set(outs)
    assert f"results/search/{winner}/rung1/last.pt" in outs
    assert sorted(metrics) == [
        f"results/runs/{winner}/evaluate/{split}/metrics.json" for split in ("test", "val")
    ]
