"""Which run a comparison selects: the best validation mIoU (a cross-validated run's: the mean
over its folds); ties go to the first declared, a run without a score ranks last."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from segpipe.io import read_json


def number(value: Any) -> float | None:
    """A score as a float, None when missing (null, NaN or not a number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return None
    return float(value)


def rank_key(score: float | None) -> tuple[bool, float]:
    """Sorts the best score (validation mIoU) first and a missing one (None, NaN) last; a
    stable sort keeps equal scores, and missing ones, in declared order."""
    value = number(score)
    return (True, 0.0) if value is None else (False, -value)


def ranked(scores: Sequence[tuple[str, float | None]]) -> list[str]:
    """The names, best score first: ties go to the first declared, missing scores last. The
    one ranking of the comparison's selection and the search's promotions."""
    return [name for name, _ in sorted(scores, key=lambda item: rank_key(item[1]))]


def validation_score(
    val_metrics: str | os.PathLike, crossval_metrics: str | os.PathLike | None = None
) -> float | None:
    """What the leaderboard ranks a run by: its val mIoU, or a cross-validated run's mean over
    its folds (its ``crossval/metrics.json``)."""
    if crossval_metrics is not None:
        val = read_json(crossval_metrics).get("val") or {}
        return number((val.get("mean_iou") or {}).get("mean"))
    return number(read_json(val_metrics).get("mean_iou"))


def selected_run(scores: Mapping[str, float | None]) -> str:
    """The run the leaderboard selects, of runs and their :func:`validation_score` in declared
    order: the best (ties: the first declared; a run without a score ranks last)."""
    return ranked(list(scores.items()))[0]
