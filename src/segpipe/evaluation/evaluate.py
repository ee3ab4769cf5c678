"""Evaluate predicted masks against the truth: per-class IoU/Dice, confusion matrix, per image."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from segpipe.data import predictions
from segpipe.data.masks import load_mask
from segpipe.data.split import read_manifest
from segpipe.evaluation.metrics import confusion_matrix, per_class_scores, summarize
from segpipe.io import write_csv, write_json
from segpipe.logs import UserError, progress

logger = logging.getLogger(__name__)


class EvaluationError(UserError, ValueError):
    """A prediction that cannot be scored against its truth: the files and the problem."""


class MissingPredictionError(UserError, FileNotFoundError):
    """A manifest image without its predicted mask."""


def evaluate_split(
    manifest_csv: str | Path,
    predictions_dir: str | Path,
    *,
    metrics_json: str | Path,
    per_class_csv: str | Path,
    confusion_csv: str | Path,
    confusion_normalized_csv: str | Path,
    confusion_counts_csv: str | Path | None = None,
    per_image_csv: str | Path,
    classes: list[str],
    ignore_index: int = 255,
    foreground_classes: list[int] | None = None,
    split: str = "test",
) -> dict:
    """Compare ``predictions_dir/masks/<id>.png`` with each manifest row's mask and write metrics.

    Dataset-level scores come from the summed confusion matrix (so large images weigh more, as
    in the usual benchmark definitions); per-image scores are in the per-image CSV.
    ``confusion_counts_csv`` gets the same summed matrix in long form (actual, predicted, count:
    one row per cell), which plotting tools such as ``dvc plots`` aggregate directly.
    """
    manifest = read_manifest(manifest_csv)
    total, rows = score_images(
        manifest, Path(predictions_dir), classes, ignore_index, foreground_classes, split
    )
    overall = summarize(total, foreground_classes)
    metrics = {
        "split": split,
        "n_images": len(manifest),
        **overall,
        "foreground_iou": overall.get("foreground_iou"),
        "classes": list(classes),
        "per_class": {
            row["class_name"]: {"iou": row["iou"], "dice": row["dice"]}
            for row in per_class_table(total, classes).to_dict("records")
        },
    }
    write_json(metrics_json, metrics)
    write_csv(per_class_csv, per_class_table(total, classes))
    write_csv(confusion_csv, confusion_table(total, classes))
    write_csv(confusion_normalized_csv, confusion_table(total, classes, normalized=True))
    if confusion_counts_csv is not None:
        write_csv(confusion_counts_csv, confusion_long(total, classes))
    write_csv(per_image_csv, pd.DataFrame(rows))
    logger.info(
        "%s: mIoU %.4f, mean Dice %.4f, pixel accuracy %.4f over %d images",
        split,
        overall["mean_iou"],
        overall["mean_dice"],
        overall["pixel_accuracy"],
        len(manifest),
    )
    return metrics


def score_images(
    manifest: pd.DataFrame,
    predictions_dir: Path,
    classes: list[str],
    ignore_index: int,
    foreground_classes: list[int] | None,
    split: str,
) -> tuple[np.ndarray, list[dict]]:
    """The summed confusion matrix over the manifest's images and one row of scores per image."""
    n = len(classes)
    total = np.zeros((n, n), dtype=np.int64)
    rows = []
    for row in progress(manifest.to_dict("records"), desc=f"evaluate {split}", logger=logger):
        truth = load_mask(row["mask"])
        pred = load_prediction(predictions_dir, row, truth.shape)
        try:
            cm = confusion_matrix(pred, truth, n, ignore_index)
        except ValueError as exc:
            path = predictions.mask_path(predictions_dir, row["id"])
            raise EvaluationError(f"{path} against {row['mask']}: {exc}") from None
        total += cm
        scores = per_class_scores(cm)
        rows.append(
            {
                "id": row["id"],
                **summarize(cm, foreground_classes),
                **{f"iou_{name}": v for name, v in zip(classes, scores["iou"], strict=True)},
            }
        )
    return total, rows


def load_prediction(predictions_dir: Path, row: dict, shape: tuple[int, ...]):
    """The predicted mask of a manifest row, which must exist and match its truth's shape."""
    path = predictions.mask_path(predictions_dir, row["id"])
    if not path.exists():
        raise MissingPredictionError(f"{path}: no prediction for image '{row['id']}'")
    pred = load_mask(path)
    if pred.shape != shape:
        raise EvaluationError(
            f"{path}: prediction is {tuple(pred.shape)} but the truth {row['mask']} is {shape}"
        )
    return pred


def per_class_table(total: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """IoU, Dice and the true and predicted pixel counts per class, from the summed matrix."""
    scores = per_class_scores(total)
    return pd.DataFrame(
        {
            "class_id": range(len(classes)),
            "class_name": classes,
            "iou": scores["iou"],
            "dice": scores["dice"],
            "true_pixels": total.sum(1).tolist(),
            "predicted_pixels": total.sum(0).tolist(),
        }
    )


def confusion_table(
    total: np.ndarray, classes: list[str], normalized: bool = False
) -> pd.DataFrame:
    """The matrix with a ``true`` column first: counts, or each row divided by its sum."""
    rows = np.maximum(total.sum(1, keepdims=True), 1)
    values = total.astype(np.float64) / rows if normalized else total
    table = pd.DataFrame(values, columns=classes)
    table.insert(0, "true", classes)
    return table


def confusion_long(matrix: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """A confusion matrix (rows = truth) as one ``actual, predicted, count`` row per cell."""
    return pd.DataFrame(
        [
            {"actual": actual, "predicted": predicted, "count": int(matrix[i, j])}
            for i, actual in enumerate(classes)
            for j, predicted in enumerate(classes)
        ],
        columns=["actual", "predicted", "count"],
    )
