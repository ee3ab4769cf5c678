"""Where a run's learning rate reaches its peak, and the search budgets whose first rung ends
before it (config/schema.yaml: search.min_epochs, train.warmup_epochs, train.scheduler).

A rung that ends within the warm-up ranks the candidates by what they learned while their
learning rate was still ramping up from zero: a candidate with a high rate looks as good as one
with a low rate, and the ranking says little about where they end. The first rung of a search
(its shortest budget, ``search.min_epochs``) must end after the peak of every candidate's
schedule, which a search plans for ``search.max_epochs`` (segpipe.workflow.search.schedule_epochs):

- ``cosine``: linear warm-up over ``train.warmup_epochs``, peak at its end;
- ``onecycle``: up to ``train.lr`` over the first :data:`ONECYCLE_PEAK` of the schedule
  (torch's OneCycleLR default ``pct_start``, which segpipe.training.schedule uses);
- ``constant``: at its peak from the first step.

Pure and torch-free; tests/training/test_schedule.py checks these peaks against the schedules
training builds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

ONECYCLE_PEAK = 0.3


def peak_epoch(train: Mapping[str, Any], schedule_epochs: int) -> float:
    """The epoch (a fraction of epochs from the start) at whose end the learning rate of a run
    with ``train`` options, planned for ``schedule_epochs``, first reaches its peak."""
    if train["scheduler"] == "cosine":
        return float(train["warmup_epochs"])
    if train["scheduler"] == "onecycle":
        return ONECYCLE_PEAK * schedule_epochs
    return 0.0


def least_first_budget(peak: float) -> int:
    """The fewest whole epochs that end after ``peak``."""
    return math.floor(peak) + 1


def warmup_problems(
    min_epochs: int, max_epochs: int, runs: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Why a search's first rung of ``min_epochs`` measures nothing: it ends at or before the
    peak of some candidate's learning rate (``runs``: candidate -> validated config), on the
    schedule of ``max_epochs``; one line naming the options and the least min_epochs that
    works, for the candidate that peaks last (the first declared among equals)."""
    if not runs:
        return []
    peaks = {name: peak_epoch(cfg["train"], max_epochs) for name, cfg in runs.items()}
    name = max(peaks, key=lambda n: peaks[n])  # the first of the latest
    peak, train = peaks[name], runs[name]["train"]
    if min_epochs > peak:
        return []
    least = least_first_budget(peak)
    whose = f"candidate '{name}'" if len(runs) > 1 else "the run"
    if train["scheduler"] == "onecycle":
        return [
            f"config options 'search.min_epochs' and 'train.scheduler': the first rung ends at "
            f"epoch {min_epochs}, before the one-cycle learning rate of {whose} peaks (epoch "
            f"{peak:g} of {max_epochs}, {ONECYCLE_PEAK:.0%} of search.max_epochs), so it would "
            f"rank the candidates on a rate still ramping up; use min_epochs {least} or more, "
            "or train.scheduler cosine with a short train.warmup_epochs"
        ]
    return [
        f"config options 'search.min_epochs' and 'train.warmup_epochs': the first rung ends at "
        f"epoch {min_epochs}, within the {peak:g}-epoch warm-up of {whose}, so it would rank "
        f"the candidates on a rate still ramping up; use min_epochs {least} or more, or a "
        f"train.warmup_epochs below {min_epochs}"
    ]
