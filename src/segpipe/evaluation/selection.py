"""Which run a comparison selects: the best validation mIoU (a cross-validated run's: the mean
over its folds); ties go to the first declared, a run without a score ranks last."""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any


def number(value: Any) -> float | None:
    """A score as a float, None when missing (null, NaN or not a number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return None
    return float(value)


def rank_key(val_miou: float | None) -> tuple[bool, float]:
    """Sorts the best validation mIoU first and a run without one last."""
    return (val_miou is None, -(val_miou or 0.0))


def _read_json(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def validation_score(
    val_metrics: str | os.PathLike, crossval_metrics: str | os.PathLike | None = None
) -> float | None:
    """What the leaderboard ranks a run by: its val mIoU, or a cross-validated run's mean over
    its folds (its ``crossval/metrics.json``)."""
    if crossval_metrics is not None:
        val = _read_json(crossval_metrics).get("val") or {}
        return number((val.get("mean_iou") or {}).get("mean"))
    return number(_read_json(val_metrics).get("mean_iou"))


def selected_run(scores: Mapping[str, float | None]) -> str:
    """The run the leaderboard selects, of runs and their :func:`validation_score` in declared
    order: the best (ties: the first declared; a run without a score ranks last)."""
    return min(scores, key=lambda name: rank_key(scores[name]))
