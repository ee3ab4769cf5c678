"""Scoring a split's predictions against the truth: dataset scores from the summed confusion
matrix, ignored pixels left out, and a missing or mis-sized prediction named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.evaluation.evaluate import EvaluationError, evaluate_split
from segpipe.logs import UserError

CLASSES = ["background", "cat"]
OUTPUTS = ("per_class_csv", "confusion_csv", "confusion_normalized_csv", "per_image_csv")


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _split(tmp_path, truths, preds):
    lines = ["id,image,mask,group,height,width"]
    for i, (truth, pred) in enumerate(zip(truths, preds, strict=True)):
        truth = np.array(truth, dtype=np.uint8)
        mask = _png(tmp_path / "masks" / f"im {i}.png", truth)
        lines.append(f"im {i},x.png,{mask},g,{truth.shape[0]},{truth.shape[1]}")
        if pred is not None:
            _png(tmp_path / "predict" / "masks" / f"im {i}.png", np.array(pred, dtype=np.uint8))
    (tmp_path / "test.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "test.csv"


def _evaluate(tmp_path, manifest):
    out = {name: tmp_path / f"{name}.csv" for name in OUTPUTS}
    return evaluate_split(
        manifest,
        tmp_path / "predict",
        metrics_json=tmp_path / "metrics.json",
        confusion_counts_csv=tmp_path / "counts.csv",
        classes=CLASSES,
        ignore_index=255,
        **out,
    ), out


def test_scores_come_from_the_summed_matrix_without_ignored_pixels(tmp_path) -> None:
    truths = [[[0, 0], [1, 255]], [[1, 1], [1, 1]]]
    preds = [[[0, 1], [1, 1]], [[1, 1], [1, 0]]]
    metrics, out = _evaluate(tmp_path, _split(tmp_path, truths, preds))
    # Summed: background 1 right, 1 called cat; cat 4 right, 1 called background; 1 ignored.
    assert metrics["per_class"]["background"]["iou"] == pytest.approx(1 / 3)
    assert metrics["per_class"]["cat"]["iou"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["cat"]["dice"] == pytest.approx(8 / 10)
    assert metrics["mean_iou"] == pytest.approx((1 / 3 + 4 / 6) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 7)
    assert json.loads((tmp_path / "metrics.json").read_text())["n_images"] == 2
    counts = pd.read_csv(tmp_path / "counts.csv")
    assert counts["count"].tolist() == [1, 1, 1, 4] and counts["count"].sum() == 7
    per_image = pd.read_csv(out["per_image_csv"], keep_default_na=False)
    assert per_image["id"].tolist() == ["im 0", "im 1"]
    assert per_image["iou_cat"].tolist() == pytest.approx([1 / 2, 3 / 4])


def test_a_missing_prediction_is_named(tmp_path) -> None:
    manifest = _split(tmp_path, [[[0, 1]], [[1, 0]]], [[[0, 1]], None])
    with pytest.raises(FileNotFoundError, match=r"im 1\.png: no prediction for image 'im 1'"):
        _evaluate(tmp_path, manifest)
    assert not (tmp_path / "metrics.json").exists()


def test_a_prediction_of_another_size_is_named(tmp_path) -> None:
    manifest = _split(tmp_path, [[[0, 1], [1, 0]]], [[[0, 1, 1], [1, 0, 0]]])
    with pytest.raises(
        ValueError, match=r"im 0\.png: prediction is \(2, 3\) but the truth .* is \(2, 2\)"
    ):
        _evaluate(tmp_path, manifest)


@pytest.mark.parametrize(
    ("truth", "pred", "named", "message"),
    [
        ([[0, 1]], [[0, 3]], "predict", r"prediction has class id 3; valid: 0\.\.1$"),
        ([[0, 1]], [[2, 1]], "predict", r"prediction has class id 2; valid: 0\.\.1$"),
        ([[7, 1]], [[0, 1]], "masks", r"truth has class id 7; valid: 0\.\.1 \(and 255, ignored\)"),
    ],
)
def test_a_class_id_out_of_range_is_named_not_counted(tmp_path, truth, pred, named, message):
    # A prediction of 2 or 3 with two classes would otherwise count in another class's cell.
    manifest = _split(tmp_path, [truth], [pred])
    with pytest.raises(EvaluationError, match=message) as caught:
        _evaluate(tmp_path, manifest)
    assert isinstance(caught.value, UserError)
    assert str(tmp_path / "predict" / "masks" / "im 0.png") in str(caught.value)
    assert str(tmp_path / "masks" / "im 0.png") in str(caught.value)
    assert named in str(caught.value)
    assert not (tmp_path / "metrics.json").exists()


def test_a_missing_or_mis_sized_prediction_ends_in_one_line(tmp_path) -> None:
    # UserErrors: the rule's log gets the message without a traceback.
    manifest = _split(tmp_path, [[[0, 1]], [[1, 0]]], [[[0, 1]], None])
    with pytest.raises(UserError):
        _evaluate(tmp_path, manifest)
    manifest = _split(tmp_path / "sized", [[[0, 1], [1, 0]]], [[[0, 1, 1], [1, 0, 0]]])
    with pytest.raises(UserError):
        _evaluate(tmp_path / "sized", manifest)
