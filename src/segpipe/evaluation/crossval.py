"""Cross-validation summary of a run's folds: each fold's scores, their mean and standard
deviation, the fold ensemble's test scores, and the out-of-fold per-image scores.

Every fold model is validated on its own fold of the train+val pool, so the folds' validation
scores are k estimates of the same quantity; their mean is the run's cross-validated score (the
comparison report ranks runs by it) and their sample standard deviation (ddof 1) its spread.
Every pool image lies in exactly one fold's validation part: the folds' per-image validation
scores together score every pool image once, each by the model that did not train on it
(out-of-fold), which the comparison's paired statistics use.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from segpipe.io import read_json, read_table, write_csv, write_json

logger = logging.getLogger(__name__)

# Scores of metrics.json (segpipe.evaluation.evaluate) summarised over the folds.
SCORES = ("mean_iou", "mean_dice", "pixel_accuracy", "foreground_iou")
FOLD_COLUMNS = [
    "model",
    "fold",
    *(f"val_{s}" for s in SCORES),
    *(f"test_{s}" for s in SCORES),
]


def mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof 1) of the values that are not None; std is
    None with fewer than two, both with none."""
    present = np.array([v for v in values if v is not None], dtype=float)
    present = present[~np.isnan(present)]
    if not len(present):
        return {"mean": None, "std": None}
    std = float(np.std(present, ddof=1)) if len(present) > 1 else None
    return {"mean": float(np.mean(present)), "std": std}


def fold_table(
    val_metrics: Sequence[str | os.PathLike],
    test_metrics: Sequence[str | os.PathLike],
    ensemble_test_metrics: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """One row per fold model (fold<i>) and, given, the ensemble: validation and test scores
    (:data:`FOLD_COLUMNS`; the ensemble has no validation split)."""
    rows = []
    for fold, (val, test) in enumerate(zip(val_metrics, test_metrics, strict=True)):
        v, t = read_json(val), read_json(test)
        rows.append(
            {
                "model": f"fold{fold}",
                "fold": fold,
                **{f"val_{s}": v.get(s) for s in SCORES},
                **{f"test_{s}": t.get(s) for s in SCORES},
            }
        )
    if ensemble_test_metrics is not None:
        t = read_json(ensemble_test_metrics)
        rows.append({"model": "ensemble", **{f"test_{s}": t.get(s) for s in SCORES}})
    frame = pd.DataFrame.from_records(rows, columns=FOLD_COLUMNS)
    return frame.astype({"fold": "Int64"})


def summarize_folds(
    folds: pd.DataFrame,
    val_metrics: Sequence[str | os.PathLike],
    test_metrics: Sequence[str | os.PathLike],
    class_names: Sequence[str],
) -> dict[str, Any]:
    """metrics.json of the cross-validation: per score, the mean and std over the folds on
    validation and on test, per-class IoU likewise, and the ensemble's test scores."""
    singles = folds[folds["model"] != "ensemble"]
    summary: dict[str, Any] = {
        "folds": len(singles),
        "std": "sample standard deviation over the folds (ddof 1)",
    }
    for split in ("val", "test"):
        summary[split] = {s: mean_std([_value(v) for v in singles[f"{split}_{s}"]]) for s in SCORES}
    for split, paths in (("val", val_metrics), ("test", test_metrics)):
        per_class = [read_json(path).get("per_class", {}) for path in paths]
        summary[split]["per_class_iou"] = {
            name: mean_std([_value(scores.get(name, {}).get("iou")) for scores in per_class])
            for name in class_names
        }
    ensemble = folds[folds["model"] == "ensemble"]
    summary["ensemble"] = (
        {"test": {s: _value(ensemble[f"test_{s}"].iloc[0]) for s in SCORES}}
        if len(ensemble)
        else None
    )
    return summary


def _value(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return float(value)


def out_of_fold(per_image: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The folds' per-image validation scores in one table, with a ``fold`` column; raises
    ValueError for an image scored by two folds (the folds must partition the pool)."""
    parts = [read_table(path).assign(fold=fold) for fold, path in enumerate(per_image)]
    frame = pd.concat(parts, ignore_index=True)
    twice = frame["id"][frame["id"].duplicated()]
    if len(twice):
        raise ValueError(
            f"image {twice.iloc[0]!r} is in the validation part of two folds: "
            f"{', '.join(map(str, per_image))}"
        )
    return frame.sort_values("id").reset_index(drop=True)


def write_crossval(
    metrics_json: str | os.PathLike,
    folds_csv: str | os.PathLike,
    per_image_csv: str | os.PathLike,
    *,
    val_metrics: Sequence[str | os.PathLike],
    test_metrics: Sequence[str | os.PathLike],
    val_per_image: Sequence[str | os.PathLike],
    class_names: Sequence[str],
    ensemble_test_metrics: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the cross-validation summary of a run's folds (inputs: each fold's val and test
    ``metrics.json`` and val ``per_image.csv``, in fold order): ``metrics_json``
    (:func:`summarize_folds`), ``folds_csv`` (:func:`fold_table`) and ``per_image_csv``
    (:func:`out_of_fold`). Returns the summary."""
    folds = fold_table(val_metrics, test_metrics, ensemble_test_metrics)
    summary = summarize_folds(folds, val_metrics, test_metrics, class_names)
    write_csv(per_image_csv, out_of_fold(val_per_image))
    write_csv(folds_csv, folds)
    write_json(metrics_json, summary)
    miou = summary["val"]["mean_iou"]
    logger.info(
        "%d folds: validation mIoU %s +- %s%s",
        summary["folds"],
        _fmt(miou["mean"]),
        _fmt(miou["std"]),
        f", ensemble test mIoU {_fmt(summary['ensemble']['test']['mean_iou'])}"
        if summary["ensemble"]
        else "",
    )
    return summary


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
