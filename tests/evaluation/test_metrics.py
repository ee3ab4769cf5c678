"""segpipe.evaluation.metrics against hand-computed values, scikit-learn, and the torchmetrics
confusion matrix and smp.metrics scores it was first computed with (the reference here)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import f1_score, jaccard_score
from torchmetrics.functional.classification import multiclass_confusion_matrix

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


# The reference: the torchmetrics confusion matrix and the smp.metrics scores on its counts.


def reference_confusion_matrix(pred, truth, num_classes, ignore_index):
    return multiclass_confusion_matrix(
        torch.from_numpy(pred).reshape(-1).long(),
        torch.from_numpy(truth).reshape(-1).long(),
        num_classes,
        ignore_index=ignore_index,
        validate_args=False,
    ).long()


def reference_scores(cm: torch.Tensor) -> dict[str, list[float]]:
    cm = cm.double()
    tp = cm.diag()
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    tn = cm.sum() - tp - fp - fn
    nan = float("nan")
    return {
        "iou": smp.metrics.iou_score(tp, fp, fn, tn, reduction=None, zero_division=nan).tolist(),
        "dice": smp.metrics.f1_score(tp, fp, fn, tn, reduction=None, zero_division=nan).tolist(),
    }


def reference_foreground_iou(cm: torch.Tensor, foreground: list[int]) -> float:
    fg = torch.zeros(cm.shape[0], dtype=torch.bool)
    fg[foreground] = True
    cm = cm.double()
    tp, fp = cm[fg][:, fg].sum(), cm[~fg][:, fg].sum()
    fn, tn = cm[fg][:, ~fg].sum(), cm[~fg][:, ~fg].sum()
    return float(smp.metrics.iou_score(tp, fp, fn, tn, reduction=None, zero_division=float("nan")))


@st.composite
def mask_pairs(draw):
    """(pred, truth, num_classes, ignore_index, foreground): masks of a drawn dtype and shape,
    values drawn from a few of the classes (so some are absent), some truth pixels ignored
    (up to all of them), and a non-empty foreground."""
    num_classes = draw(st.integers(1, 24))
    dtype = draw(st.sampled_from([np.uint8, np.int32, np.int64]))
    shape = draw(st.lists(st.integers(0, 9), min_size=1, max_size=3).map(tuple))
    size = int(np.prod(shape))
    used = draw(st.lists(st.integers(0, num_classes - 1), min_size=1, max_size=4))
    values = st.lists(st.sampled_from(used), min_size=size, max_size=size)
    truth = np.array(draw(values), dtype=dtype).reshape(shape)
    pred = np.array(draw(values), dtype=dtype).reshape(shape)
    ignore_index = draw(st.sampled_from([255, None]))
    if ignore_index is not None:
        ignored = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        truth[np.array(ignored, dtype=bool).reshape(shape)] = ignore_index
    foreground = draw(st.sets(st.integers(0, num_classes - 1), min_size=1).map(sorted))
    return pred, truth, num_classes, ignore_index, foreground


def assert_same_floats(actual, expected):
    """Equal to the last bit, NaN where the reference has NaN."""
    np.testing.assert_array_equal(np.array(actual, dtype=float), np.array(expected, dtype=float))


@settings(max_examples=150, deadline=None)
@given(mask_pairs())
def test_numpy_masks_score_as_the_reference_does(case):
    pred, truth, num_classes, ignore_index, foreground = case
    expected = reference_confusion_matrix(pred, truth, num_classes, ignore_index)
    cm = confusion_matrix(pred, truth, num_classes, ignore_index)
    assert isinstance(cm, np.ndarray) and cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected.numpy())
    scores, reference = per_class_scores(cm), reference_scores(expected)
    assert_same_floats(scores["iou"], reference["iou"])
    assert_same_floats(scores["dice"], reference["dice"])
    total = expected.sum().item()
    out = summarize(cm, foreground)
    assert_same_floats(
        [out["pixel_accuracy"], out["mean_iou"], out["mean_dice"], out["foreground_iou"]],
        [
            expected.diag().sum().item() / total if total else float("nan"),
            nanmean(reference["iou"]),
            nanmean(reference["dice"]),
            reference_foreground_iou(expected, foreground),
        ],
    )
    assert all(type(v) is float for v in [*out.values(), *scores["iou"], *scores["dice"]])


@settings(max_examples=50, deadline=None)
@given(mask_pairs())
def test_tensor_masks_give_the_reference_tensor(case):
    # The training loop passes tensors (on its device) and gets a tensor it can all-reduce.
    pred, truth, num_classes, ignore_index, _ = case
    expected = reference_confusion_matrix(pred, truth, num_classes, ignore_index)
    cm = confusion_matrix(
        torch.from_numpy(pred), torch.from_numpy(truth), num_classes, ignore_index
    )
    assert isinstance(cm, torch.Tensor) and cm.dtype == torch.int64
    assert torch.equal(cm, expected)
    assert_same_floats(per_class_scores(cm)["iou"], reference_scores(expected)["iou"])


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 300),
    st.lists(st.integers(0, 255), min_size=1, max_size=4),
    st.sampled_from([None, 0, 1, 2, 255, 256, -1]),
    st.integers(0, 2**32 - 1),
)
def test_uint8_masks_count_and_refuse_as_wider_ones_do(num_classes, used, ignore_index, seed):
    """uint8 masks (as PNG masks are read) take a histogram; every result and every message is
    that of the same masks as int64."""
    rng = np.random.default_rng(seed)
    pred, truth = (rng.choice(used, size=(5, 7)).astype(np.uint8) for _ in range(2))
    try:
        expected = confusion_matrix(
            pred.astype(np.int64), truth.astype(np.int64), num_classes, ignore_index
        )
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error))):
            confusion_matrix(pred, truth, num_classes, ignore_index)
        return
    got = confusion_matrix(pred, truth, num_classes, ignore_index)
    assert got.dtype == np.int64 and got.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(got, expected)


def test_every_pixel_ignored_gives_an_empty_matrix_and_nan_scores():
    truth = np.full((4, 5), IGNORE, dtype=np.uint8)
    cm = confusion_matrix(np.zeros((4, 5), np.uint8), truth, 3, IGNORE)
    assert cm.tolist() == [[0] * 3] * 3
    out = summarize(cm, [1])
    assert all(math.isnan(out[key]) for key in out)


def test_one_class_image_scores_one_for_that_class_and_nan_for_the_rest():
    truth = np.full((3, 3), 2, dtype=np.uint8)
    cm = confusion_matrix(truth.copy(), truth, 4, IGNORE)
    assert cm[2, 2] == 9 and cm.sum() == 9
    scores = per_class_scores(cm)
    assert scores["iou"][2] == 1.0 and scores["dice"][2] == 1.0
    assert [math.isnan(v) for v in scores["iou"]] == [True, True, False, True]
    assert summarize(cm) == {"pixel_accuracy": 1.0, "mean_iou": 1.0, "mean_dice": 1.0}


def test_large_class_ids_in_uint8_masks_do_not_wrap_around():
    # 30 * 20 + 19 is past 255: the pair index must be computed in int64, not in uint8.
    truth = np.array([19, 19, 18, 0], dtype=np.uint8)
    pred = np.array([19, 18, 18, 0], dtype=np.uint8)
    cm = confusion_matrix(pred, truth, 20, IGNORE)
    assert cm[19, 19] == 1 and cm[19, 18] == 1 and cm[18, 18] == 1 and cm[0, 0] == 1
    assert cm.sum() == 4


@pytest.mark.parametrize(
    ("pred", "truth", "message"),
    [
        ([0, 3], [0, 1], r"prediction has class id 3; valid: 0\.\.2"),
        ([0, -1], [0, 1], r"prediction has class id -1; valid: 0\.\.2"),
        ([0, 1], [7, 1], r"truth has class id 7; valid: 0\.\.2 \(and 255, ignored\)"),
    ],
)
@pytest.mark.parametrize("kind", ["int64", "uint8", "tensor"])
def test_a_class_id_out_of_range_is_an_error_not_a_wrong_count(pred, truth, message, kind):
    # Prediction 3 with truth 0 would otherwise land in row 1, column 0 of a 3-class matrix.
    if kind == "uint8" and min(pred + truth) < 0:
        pytest.skip("a uint8 mask holds no negative id")
    pred, truth = np.array(pred), np.array(truth)
    if kind == "uint8":  # as PNG masks are read: the histogram path, which defers to the checks
        pred, truth = pred.astype(np.uint8), truth.astype(np.uint8)
    if kind == "tensor":
        pred, truth = torch.from_numpy(pred), torch.from_numpy(truth)
    with pytest.raises(ValueError, match=message):
        confusion_matrix(pred, truth, 3, IGNORE)


def test_without_an_ignore_index_255_is_an_id_out_of_range_too():
    with pytest.raises(ValueError, match=r"^truth has class id 255; valid: 0\.\.2$"):
        confusion_matrix(np.array([0, 1]), np.array([0, 255], dtype=np.uint8), 3, None)


def test_scores_accept_a_numpy_matrix_and_a_tensor_alike():
    cm = confusion_matrix(PRED.numpy(), TRUTH.numpy(), 3, IGNORE)
    assert cm.tolist() == HAND_CM
    assert per_class_scores(cm) == per_class_scores(torch.from_numpy(cm))
    assert summarize(cm, [0, 2]) == summarize(torch.from_numpy(cm), [0, 2])


# The segpipe modules that the evaluate, crossval, report, compare and search report jobs import.
LEAN_JOBS = (
    "segpipe.evaluation.evaluate",
    "segpipe.evaluation.crossval",
    "segpipe.reporting.run_report",
    "segpipe.reporting.comparison",
    "segpipe.reporting.search_report",
    "segpipe.logs",
)
HEAVY = ("torch", "torchmetrics", "segmentation_models_pytorch", "timm", "torchvision")


def test_evaluation_and_report_jobs_import_no_torch():
    code = (
        "import json, sys\n"
        + "".join(f"import {module}\n" for module in LEAN_JOBS)
        + f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
