"""A search in two Hyperband brackets end to end at tiny scale: three candidates (a grid over
the learning rate), eta 2, rungs of 1, 2 and 4 epochs; bracket 0 starts at rung 0, bracket 1
at rung 1. Who trains which rung (once, whichever brackets need it), the selection across the
brackets, the winner's full pipeline and nobody else's, the report, DVC, and what a change
reruns."""

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
SEARCH = {
    "grid": {"train.lr": [0.001, 0.003, 0.01]},
    "search": {"min_epochs": 1, "max_epochs": 4, "eta": 2, "brackets": 2},
    "train": {"warmup_epochs": 0},
}
TRAINED = re.compile(r"rule search_train:\n(?:    .*\n)*?    wildcards: run=([^,]+), rung=(\d)")


def write_search(work: Path, search: dict) -> None:
    (work / "config" / "search.yaml").write_text(yaml.safe_dump(search))


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> tuple[Path, list[tuple[str, str]]]:
    """The finished search and the (candidate, rung) of every search_train job it ran."""
    work = copy_workflow(tmp_path_factory.mktemp("brackets"))
    write_search(work, SEARCH)
    proc = snakemake(work, *ARGS, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work, TRAINED.findall(proc.stdout + proc.stderr)


@pytest.fixture
def work(done, tmp_path: Path) -> Path:
    """A copy of the finished search (timestamps and Snakemake's records kept) to change."""
    shutil.copytree(done[0], tmp_path / "work", symlinks=True)
    return tmp_path / "work"


def rung(work: Path, bracket: int, r: int) -> pd.DataFrame:
    return pd.read_csv(work / "results" / "search" / f"bracket{bracket}" / f"rung{r}.csv")


def promoted(table: pd.DataFrame) -> list[str]:
    return table.loc[table["promoted"] == "yes", "candidate"].tolist()


def test_each_bracket_halves_from_its_own_first_rung(done) -> None:
    work, _ = done
    b0 = [rung(work, 0, r) for r in (0, 1, 2)]
    b1 = [rung(work, 1, r) for r in (1, 2)]
    assert [len(t) for t in b0] == [3, 2, 1] and [len(t) for t in b1] == [3, 2]
    assert [set(t["epochs"]) for t in b0] == [{1}, {2}, {4}]
    assert [set(t["epochs"]) for t in b1] == [{2}, {4}]
    assert b0[0]["candidate"].tolist() == b1[0]["candidate"].tolist() == CANDIDATES
    for number, bracket in enumerate((b0, b1)):
        for before, after in zip(bracket, bracket[1:], strict=False):
            assert after["candidate"].tolist() == promoted(before)
        assert len(promoted(bracket[-1])) == 1
        assert all(set(table["bracket"]) == {number} for table in bracket)
    # A candidate's rung is the same training in both brackets: the same score.
    both = b0[1].merge(b1[0], on="candidate", suffixes=("_0", "_1"))
    assert len(both) == 2 and (both["val_miou_0"] == both["val_miou_1"]).all()


def test_each_rung_of_a_candidate_trains_once(done) -> None:
    work, trained = done
    assert len(trained) == len(set(trained))
    wanted = {
        (name, str(r))
        for bracket, rungs in ((0, (0, 1, 2)), (1, (1, 2)))
        for r in rungs
        for name in rung(work, bracket, r)["candidate"]
    }
    # Rung 0 of every candidate too: bracket 1's rung 1 resumes from it.
    assert set(trained) == wanted | {(name, "0") for name in CANDIDATES}


def test_the_winner_is_the_best_of_the_last_rungs_and_alone_reaches_the_test_split(done) -> None:
    work, _ = done
    selection = pd.read_csv(work / "results" / "search" / "winner.csv")
    lasts = [rung(work, b, 2) for b in (0, 1)]
    bests = [t.loc[t["promoted"] == "yes"].iloc[0] for t in lasts]
    assert selection["candidate"].tolist() == [b["candidate"] for b in bests]
    assert selection["val_miou"].tolist() == [b["val_miou"] for b in bests]
    best = max(range(2), key=lambda i: (bests[i]["val_miou"], -i))
    (winner,) = selection.loc[selection["winner"] == "yes", "candidate"]
    assert winner == bests[best]["candidate"]
    assert sorted(p.name for p in (work / "results" / "runs").iterdir()) == [winner]
    for split in ("val", "test"):
        assert (work / "results" / "runs" / winner / "evaluate" / split / "metrics.json").is_file()
    history = pd.read_csv(work / "results" / "runs" / winner / "train" / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    html = (work / "results" / "search" / "report.html").read_text()
    assert 'id="bracket-0"' in html and 'id="bracket-1"' in html and 'id="selection"' in html
    assert f"<strong>{winner}</strong>" in html


def test_a_finished_bracket_search_reruns_nothing(done) -> None:
    assert planned_rules(done[0], *ARGS) == {}
    # Each target alone too: the report's inputs wait for the selection its params read.
    for target in ("results/search/report.html", "results/search/winner.csv"):
        assert planned_rules(done[0], *ARGS, "--", target) == {}


def test_a_new_candidate_trains_what_the_brackets_need_of_it_and_nothing_else(work) -> None:
    """The new candidate trains rung 0 (bracket 0) and rung 1 (bracket 1's first); the rungs
    are decided again, and an old candidate trains only a rung it had not trained."""
    before = {
        (p.parent.name, p.name.removeprefix("rung"))
        for p in (work / "results" / "search").glob("*/rung*")
        if p.is_dir()
    }
    write_search(work, {**SEARCH, "grid": {"train.lr": [0.001, 0.003, 0.01, 0.0003]}})
    proc = snakemake(work, *ARGS, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-6000:]
    trained = TRAINED.findall(proc.stdout + proc.stderr)
    assert len(trained) == len(set(trained))
    assert {("lr-0.0003", "0"), ("lr-0.0003", "1")} <= set(trained)
    assert not set(trained) & before  # nothing trained twice
    assert len(rung(work, 0, 0)) == len(rung(work, 1, 1)) == 4
    assert "rule search_report:" in proc.stdout + proc.stderr  # redecided rungs, new report
    assert planned_rules(work, *ARGS) == {}


def test_a_longer_search_retrains_every_rung_and_leaves_nothing_stale(work) -> None:
    """Raising max_epochs changes every epoch's learning rate (cosine): every rung trains
    again, and the winner's run and the report follow in the same run."""
    write_search(work, {**SEARCH, "search": {**SEARCH["search"], "max_epochs": 8}})
    proc = snakemake(work, *ARGS, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert set(rung(work, 0, 3)["epochs"]) == set(rung(work, 1, 3)["epochs"]) == {8}
    assert planned_rules(work, *ARGS) == {}


def test_dvc_records_every_brackets_rungs_and_the_selection(work) -> None:
    outs = [next(iter(entry)) for entry in dvc_stage(work)["outs"]]
    files = [f"results/search/bracket{b}/rung{r}.csv" for b, r in ((0, 0), (0, 1), (0, 2), (1, 1))]
    assert {*files, "results/search/bracket1/rung2.csv", "results/search/winner.csv"} <= set(outs)
    assert "results/search/report.html" in outs
