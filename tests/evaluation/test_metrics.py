"""segpipe.evaluation.metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import f1_score, jaccard_score

from segpipe.evaluation.metrics import (
    confusion_matrix,
    foreground_iou,
    nanmean,
    per_class_scores,
    summarize,
)

IGNORE = 255

# Eight pixels, the last two ignored in the truth. Kept pairs (truth, pred):
# (0,0) (0,0) (0,1) (1,1) (1,2) (2,2)
TRUTH = torch.tensor([[0, 0, 0, 1], [1, 2, IGNORE, IGNORE]], dtype=torch.uint8)
PRED = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 1]], dtype=torch.uint8)
# rows = truth, columns = prediction
HAND_CM = [
    [2, 1, 0],
    [0, 1, 1],
    [0, 0, 1],
]
# class 0: tp 2 fp 0 fn 1 -> IoU 2/3, Dice 4/5
# class 1: tp 1 fp 1 fn 1 -> IoU 1/3, Dice 2/4
# class 2: tp 1 fp 1 fn 0 -> IoU 1/2, Dice 2/3
HAND_IOU = [2 / 3, 1 / 3, 1 / 2]
HAND_DICE = [4 / 5, 1 / 2, 2 / 3]


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(PRED, TRUTH, 3, IGNORE)
    assert cm.dtype == torch.int64
    assert cm.tolist() == HAND_CM
    assert cm.sum() == 6  # the two ignored pixels are not counted


def test_confusion_matrix_without_ignore_counts_every_pixel():
    truth = torch.tensor([0, 1, 1, 2])
    pred = torch.tensor([0, 1, 2, 2])
    cm = confusion_matrix(pred, truth, 3, ignore_index=None)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_per_class_scores_by_hand():
    scores = per_class_scores(confusion_matrix(PRED, TRUTH, 3, IGNORE))
    assert scores["iou"] == pytest.approx(HAND_IOU)
    assert scores["dice"] == pytest.approx(HAND_DICE)


def test_summarize_by_hand():
    out = summarize(confusion_matrix(PRED, TRUTH, 3, IGNORE))
    assert out["pixel_accuracy"] == pytest.approx(4 / 6)
    assert out["mean_iou"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)  # 0.5
    assert out["mean_dice"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert "foreground_iou" not in out


def test_foreground_iou_by_hand():
    # Foreground = classes 0 and 2 merged, background = class 1. Kept pairs as (truth, pred)
    # foreground/background: (f,f) (f,f) (f,b) (b,b) (b,f) (f,f) -> tp 3, fn 1, fp 1.
    cm = confusion_matrix(PRED, TRUTH, 3, IGNORE)
    assert foreground_iou(cm, [0, 2]) == pytest.approx(3 / 5)
    # Foreground = class 0 alone is the per-class IoU of class 0.
    assert foreground_iou(cm, [0]) == pytest.approx(2 / 3)
    assert summarize(cm, [0, 2])["foreground_iou"] == pytest.approx(3 / 5)


def test_class_absent_from_truth_and_prediction_is_nan_and_skipped():
    # A fourth class that occurs nowhere: 0/0, so NaN rather than 0 or 1.
    cm = confusion_matrix(PRED, TRUTH, 4, IGNORE)
    scores = per_class_scores(cm)
    assert scores["iou"][:3] == pytest.approx(HAND_IOU)
    assert math.isnan(scores["iou"][3])
    assert math.isnan(scores["dice"][3])
    # The means skip it and equal the three-class means.
    out = summarize(cm)
    assert out["mean_iou"] == pytest.approx(0.5)
    assert out["mean_dice"] == pytest.approx(sum(HAND_DICE) / 3)


def test_class_missed_entirely_scores_zero_not_nan():
    truth = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 0, 0, 0])  # class 1 is in the truth but never predicted
    scores = per_class_scores(confusion_matrix(pred, truth, 2, IGNORE))
    assert scores["iou"] == pytest.approx([0.5, 0.0])
    assert scores["dice"] == pytest.approx([2 / 3, 0.0])


def test_nanmean():
    assert nanmean([0.2, float("nan"), 0.4]) == pytest.approx(0.3)
    assert math.isnan(nanmean([float("nan")]))
    assert math.isnan(nanmean([]))


def test_empty_confusion_matrix_gives_nan_not_an_error():
    out = summarize(torch.zeros(3, 3, dtype=torch.long))
    assert math.isnan(out["pixel_accuracy"])
    assert math.isnan(out["mean_iou"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_on_random_predictions(seed):
    num_classes = 5
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, num_classes, size=(3, 17, 23))
    truth[rng.random(truth.shape) < 0.1] = IGNORE  # ~10% ignored pixels
    # Predictions agree with the truth half the time so the scores are not all near chance.
    pred = np.where(
        rng.random(truth.shape) < 0.5, truth, rng.integers(0, num_classes, size=truth.shape)
    )
    pred[pred == IGNORE] = 0  # a model never predicts the ignore index

    keep = truth != IGNORE
    t, p = truth[keep], pred[keep]
    labels = list(range(num_classes))

    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(truth), num_classes, IGNORE)
    np.testing.assert_array_equal(cm.numpy(), sk_confusion_matrix(t, p, labels=labels))

    scores = per_class_scores(cm)
    np.testing.assert_allclose(
        scores["iou"], jaccard_score(t, p, labels=labels, average=None), rtol=1e-12
    )
    np.testing.assert_allclose(
        scores["dice"], f1_score(t, p, labels=labels, average=None), rtol=1e-12
    )
    out = summarize(cm)
    assert out["pixel_accuracy"] == pytest.approx((t == p).mean())
    assert out["mean_iou"] == pytest.approx(jaccard_score(t, p, labels=labels, average="macro"))
    assert out["mean_dice"] == pytest.approx(f1_score(t, p, labels=labels, average="macro"))


def test_confusion_matrices_add_up_over_images():
    rng = np.random.default_rng(7)
    truths = [torch.from_numpy(rng.integers(0, 3, size=(8, 8))) for _ in range(3)]
    preds = [torch.from_numpy(rng.integers(0, 3, size=(8, 8))) for _ in range(3)]
    summed = sum(confusion_matrix(p, t, 3, IGNORE) for p, t in zip(preds, truths, strict=True))
    whole = confusion_matrix(torch.stack(preds), torch.stack(truths), 3, IGNORE)
    assert torch.equal(summed, whole)
