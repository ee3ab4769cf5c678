"""Segmentation metrics from confusion matrices, with numpy only.

The matrix of a pair of masks is one ``bincount`` of ``num_classes * truth + prediction`` over
the pixels whose truth is not ``ignore_index``. Per-class IoU is tp / (tp + fp + fn) and Dice
(F1) is 2 tp / (2 tp + fn + fp); a class absent from both truth and prediction has 0/0 and is
NaN, not 0, and means skip NaNs.

The training loop passes torch tensors on its device and gets a tensor back, computed with the
tensors' own methods: this module never imports torch, so evaluation and report jobs do not.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(pred: Any, target: Any, num_classes: int, ignore_index: int | None = 255):
    """(C, C) int64 counts, rows = truth, columns = prediction; ``ignore_index`` pixels skipped.

    Masks of any integer dtype and shape (both the same); numpy arrays (or anything
    ``np.asarray`` takes) give a numpy array, torch tensors a tensor on their device. A class id
    outside ``0..C-1`` (other than the ignored one) is a ValueError, not a wrong count.
    """
    n = num_classes
    tensor = _is_tensor(pred) or _is_tensor(target)
    if not tensor and (counts := _uint8_counts(pred, target, n, ignore_index)) is not None:
        return counts
    if tensor:  # on the tensors' device, with their own methods
        pred = pred.reshape(-1).long()
        target = target.reshape(-1).long().to(pred.device)
    else:
        pred = np.asarray(pred).reshape(-1).astype(np.int64, copy=False)
        target = np.asarray(target).reshape(-1).astype(np.int64, copy=False)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    _check_ids(pred, target, n, ignore_index)
    index = n * target + pred
    counts = index.bincount(minlength=n * n) if tensor else np.bincount(index, minlength=n * n)
    return counts.reshape(n, n) if tensor else counts.reshape(n, n).astype(np.int64, copy=False)


def _uint8_counts(pred: Any, target: Any, n: int, ignore_index: int | None) -> np.ndarray | None:
    """The matrix of two uint8 masks (as PNG masks are read) from one histogram of
    ``256 * truth + prediction`` in uint16: a few times faster than widening both to int64 and
    filtering. None for other masks, and where an id outside ``0..n-1`` (other than the
    ignored one) occurs: the general path then names it."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.dtype != np.uint8 or target.dtype != np.uint8 or pred.shape != target.shape or n > 256:
        return None
    index = target.reshape(-1).astype(np.uint16) << 8
    index |= pred.reshape(-1)
    counts = np.bincount(index, minlength=256 * 256).reshape(256, 256)
    if ignore_index is not None and 0 <= ignore_index < 256:
        counts[ignore_index] = 0
    inside = counts[:n, :n]
    return inside.astype(np.int64) if inside.sum() == counts.sum() else None


def _is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor; torch is not imported when nothing else has."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _check_ids(pred, target, num_classes: int, ignore_index: int | None) -> None:
    """ValueError naming the first mask (prediction, then truth) with an id outside 0..C-1;
    on tensors, one device sync when all ids are valid."""
    outside = [(values < 0) | (values >= num_classes) for values in (pred, target)]
    if not bool(outside[0].any() | outside[1].any()):
        return
    for name, values, bad in zip(("prediction", "truth"), (pred, target), outside, strict=True):
        if bool(bad.any()):
            ignored = "" if ignore_index is None else f" (and {ignore_index}, ignored)"
            raise ValueError(
                f"{name} has class id {int(values[bad][0])}; valid: 0..{num_classes - 1}"
                f"{ignored if name == 'truth' else ''}"
            )


def _stats(cm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    return tp, fp, fn


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> list[float]:
    """``numerator / denominator`` element-wise as floats, NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(denominator > 0, numerator / denominator, np.nan)
    return [float(v) for v in np.atleast_1d(values)]


def per_class_scores(cm) -> dict[str, list[float]]:
    """Per-class IoU and Dice (F1) from a confusion matrix; NaN where the class never occurs."""
    tp, fp, fn = _stats(cm)
    return {"iou": _ratio(tp, tp + fp + fn), "dice": _ratio(2 * tp, 2 * tp + fn + fp)}


def nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def foreground_iou(cm, foreground: Sequence[int]) -> float:
    """IoU of the merged foreground classes against everything else (binary)."""
    cm = np.asarray(cm, dtype=np.float64)
    fg = np.zeros(cm.shape[0], dtype=bool)
    fg[list(foreground)] = True
    tp = cm[fg][:, fg].sum()
    fp = cm[~fg][:, fg].sum()
    fn = cm[fg][:, ~fg].sum()
    return _ratio(tp, tp + fp + fn)[0]


def summarize(cm, foreground: Sequence[int] | None = None) -> dict[str, float]:
    """Pixel accuracy, mean IoU, mean Dice (NaN-skipping) and optional foreground IoU."""
    scores = per_class_scores(cm)
    counts = np.asarray(cm)
    total = counts.sum().item()
    out = {
        "pixel_accuracy": np.trace(counts).item() / total if total else float("nan"),
        "mean_iou": nanmean(scores["iou"]),
        "mean_dice": nanmean(scores["dice"]),
    }
    if foreground:
        out["foreground_iou"] = foreground_iou(cm, foreground)
    return out
