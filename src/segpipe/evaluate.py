"""Evaluate predicted masks against the truth: per-class IoU/Dice, confusion matrix, per image."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from segpipe.data import load_mask, read_manifest
from segpipe.io import write_csv, write_json
from segpipe.logs import progress
from segpipe.metrics import confusion_matrix, per_class_scores, summarize

logger = logging.getLogger(__name__)


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
    n = len(classes)
    manifest = read_manifest(manifest_csv)
    total = torch.zeros(n, n, dtype=torch.long)
    rows = []
    for row in progress(manifest.to_dict("records"), desc=f"evaluate {split}", logger=logger):
        truth = torch.from_numpy(load_mask(row["mask"]))
        pred_path = Path(predictions_dir) / "masks" / f"{row['id']}.png"
        if not pred_path.exists():
            raise FileNotFoundError(f"{pred_path}: no prediction for image '{row['id']}'")
        pred = torch.from_numpy(load_mask(pred_path))
        if pred.shape != truth.shape:
            raise ValueError(
                f"{pred_path}: prediction is {tuple(pred.shape)} but the truth {row['mask']} "
                f"is {tuple(truth.shape)}"
            )
        cm = confusion_matrix(pred, truth, n, ignore_index)
        total += cm
        scores = per_class_scores(cm)
        rows.append(
            {
                "id": row["id"],
                **summarize(cm, foreground_classes),
                **{f"iou_{name}": v for name, v in zip(classes, scores["iou"], strict=True)},
            }
        )
    overall = summarize(total, foreground_classes)
    scores = per_class_scores(total)
    metrics = {
        "split": split,
        "n_images": len(manifest),
        **overall,
        "foreground_iou": overall.get("foreground_iou"),
        "classes": list(classes),
        "per_class": {
            name: {"iou": scores["iou"][i], "dice": scores["dice"][i]}
            for i, name in enumerate(classes)
        },
    }
    per_class = pd.DataFrame(
        {
            "class_id": range(n),
            "class_name": classes,
            "iou": scores["iou"],
            "dice": scores["dice"],
            "true_pixels": total.sum(1).tolist(),
            "predicted_pixels": total.sum(0).tolist(),
        }
    )
    counts = pd.DataFrame(total.numpy(), columns=classes)
    counts.insert(0, "true", classes)
    normalized = pd.DataFrame(
        (total.double() / total.sum(1, keepdim=True).clamp(min=1)).numpy(), columns=classes
    )
    normalized.insert(0, "true", classes)
    write_json(metrics_json, metrics)
    write_csv(per_class_csv, per_class)
    write_csv(confusion_csv, counts)
    write_csv(confusion_normalized_csv, normalized)
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


def confusion_long(matrix: torch.Tensor, classes: list[str]) -> pd.DataFrame:
    """A confusion matrix (rows = truth) as one ``actual, predicted, count`` row per cell."""
    return pd.DataFrame(
        [
            {"actual": actual, "predicted": predicted, "count": int(matrix[i, j])}
            for i, actual in enumerate(classes)
            for j, predicted in enumerate(classes)
        ],
        columns=["actual", "predicted", "count"],
    )
