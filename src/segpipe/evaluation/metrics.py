"""Segmentation metrics from confusion matrices (torchmetrics) and smp.metrics.

Per-class IoU and Dice come from smp.metrics on the tp/fp/fn/tn counts of a confusion matrix; a
class absent from both truth and prediction has 0/0 and is NaN, not 0, and means skip NaNs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> torch.Tensor:
    """(C, C) int64 counts, rows = truth, columns = prediction; ``ignore_index`` pixels skipped."""
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    return multiclass_confusion_matrix(
        pred, target, num_classes, ignore_index=ignore_index, validate_args=False
    ).long()


def _stats(cm: torch.Tensor):
    cm = cm.double()
    tp = cm.diag()
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    tn = cm.sum() - tp - fp - fn
    return tp, fp, fn, tn


def per_class_scores(cm: torch.Tensor) -> dict[str, list[float]]:
    """Per-class IoU and Dice (F1) from a confusion matrix; NaN where the class never occurs."""
    tp, fp, fn, tn = _stats(cm)
    nan = float("nan")
    iou = smp.metrics.iou_score(tp, fp, fn, tn, reduction=None, zero_division=nan)
    dice = smp.metrics.f1_score(tp, fp, fn, tn, reduction=None, zero_division=nan)
    return {"iou": iou.tolist(), "dice": dice.tolist()}


def nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def foreground_iou(cm: torch.Tensor, foreground: Sequence[int]) -> float:
    """IoU of the merged foreground classes against everything else (binary)."""
    fg = torch.zeros(cm.shape[0], dtype=torch.bool)
    fg[list(foreground)] = True
    cm = cm.double()
    tp = cm[fg][:, fg].sum()
    fp = cm[~fg][:, fg].sum()
    fn = cm[fg][:, ~fg].sum()
    tn = cm[~fg][:, ~fg].sum()
    return float(smp.metrics.iou_score(tp, fp, fn, tn, reduction=None, zero_division=float("nan")))


def summarize(cm: torch.Tensor, foreground: Sequence[int] | None = None) -> dict[str, float]:
    """Pixel accuracy, mean IoU, mean Dice (NaN-skipping) and optional foreground IoU."""
    scores = per_class_scores(cm)
    total = cm.sum().item()
    out = {
        "pixel_accuracy": cm.diag().sum().item() / total if total else float("nan"),
        "mean_iou": nanmean(scores["iou"]),
        "mean_dice": nanmean(scores["dice"]),
    }
    if foreground:
        out["foreground_iou"] = foreground_iou(cm, foreground)
    return out
