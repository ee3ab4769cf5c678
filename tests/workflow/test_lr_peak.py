"""A search's first rung must end after every candidate's learning rate peaks: the warm-up of a
cosine schedule, 30% of a one-cycle schedule (segpipe.workflow.lr_peak)."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.workflow.lr_peak import (
    ONECYCLE_PEAK,
    least_first_budget,
    peak_epoch,
    warmup_problems,
)

from helpers.repo import copy_workflow, snakemake


def train(scheduler: str = "cosine", warmup: float = 0.0) -> dict:
    return {"train": {"scheduler": scheduler, "warmup_epochs": warmup}}


def test_where_each_schedule_peaks() -> None:
    assert peak_epoch(train("cosine", 1.5)["train"], 27) == 1.5
    assert peak_epoch(train("cosine", 0)["train"], 27) == 0.0
    assert peak_epoch(train("onecycle", 5)["train"], 27) == pytest.approx(8.1)  # warm-up unused
    assert peak_epoch(train("constant", 5)["train"], 27) == 0.0
    assert ONECYCLE_PEAK == 0.3


@pytest.mark.parametrize(
    ("min_epochs", "warmup", "least"),
    [(1, 1, 2), (2, 2, 3), (1, 1.5, 2), (2, 2.5, 3), (1, 3, 4), (3, 3.0, 4)],
)
def test_a_first_rung_within_the_warm_up_is_refused_with_the_least_budget(
    min_epochs, warmup, least
) -> None:
    (line,) = warmup_problems(min_epochs, 27, {"run": train("cosine", warmup)})
    assert line.startswith(
        "config options 'search.min_epochs' and 'train.warmup_epochs': the first rung ends at "
        f"epoch {min_epochs}, within the {warmup:g}-epoch warm-up of the run"
    )
    assert f"use min_epochs {least} or more, or a train.warmup_epochs below {min_epochs}" in line
    assert "\n" not in line
    assert warmup_problems(least, 27, {"run": train("cosine", warmup)}) == []


@pytest.mark.parametrize(("min_epochs", "warmup"), [(1, 0), (1, 0.5), (2, 1), (2, 1.99)])
def test_a_first_rung_after_the_warm_up_passes(min_epochs, warmup) -> None:
    assert warmup_problems(min_epochs, 27, {"run": train("cosine", warmup)}) == []


def test_a_one_cycle_schedule_peaks_at_30_percent_of_max_epochs() -> None:
    (line,) = warmup_problems(8, 27, {"run": train("onecycle")})
    assert line.startswith("config options 'search.min_epochs' and 'train.scheduler': ")
    assert "(epoch 8.1 of 27, 30% of search.max_epochs)" in line
    assert "use min_epochs 9 or more, or train.scheduler cosine" in line
    assert warmup_problems(9, 27, {"run": train("onecycle")}) == []
    assert warmup_problems(1, 27, {"run": train("constant", 3)}) == []


def test_the_candidate_that_peaks_last_is_named() -> None:
    runs = {
        "short": train("cosine", 0.5),
        "long": train("cosine", 2),
        "long2": train("cosine", 2),
        "flat": train("constant"),
    }
    (line,) = warmup_problems(2, 27, runs)
    assert "the 2-epoch warm-up of candidate 'long'," in line and "min_epochs 3" in line
    assert warmup_problems(3, 27, runs) == []
    assert warmup_problems(1, 27, {}) == []


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["cosine", "onecycle", "constant"]),
    st.floats(0, 20, allow_nan=False),
    st.integers(2, 200),
    st.integers(1, 200),
)
def test_the_least_budget_is_the_first_that_passes(scheduler, warmup, high, low) -> None:
    runs = {"run": train(scheduler, warmup)}
    peak = peak_epoch(runs["run"]["train"], high)
    least = least_first_budget(peak)
    assert least > peak >= least - 1
    assert (warmup_problems(low, high, runs) == []) == (low >= least)


@pytest.mark.slow
def test_the_default_warm_up_refuses_a_one_epoch_first_rung_before_any_job(tmp_path) -> None:
    """config/config.yaml warms up for 1 epoch: a search from 1 epoch is refused in one line."""
    work = copy_workflow(tmp_path)
    (work / "config" / "search.yaml").write_text(
        yaml.safe_dump(
            {
                "grid": {"train.lr": [0.001, 0.003, 0.01]},
                "search": {"min_epochs": 1, "max_epochs": 9},
                "train": {"warmup_epochs": 1},
            }
        )
    )
    proc = snakemake(work, "-n", "--configfile", "config/test.yaml", "config/search.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert (
        "config options 'search.min_epochs' and 'train.warmup_epochs': the first rung ends at "
        "epoch 1, within the 1-epoch warm-up of candidate 'lr-0.001'" in out
    )
    assert not (work / "results").exists()
