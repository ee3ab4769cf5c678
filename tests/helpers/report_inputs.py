"""Tiny fake pipeline outputs, shared by the report tests: :func:`report_inputs` for
segpipe.reporting.run_report.build_report (tests/reporting/test_run_report.py) and :func:`fold_report_inputs` for a run with
k-fold cross-validation, :func:`make_run` and :func:`three_runs` for
segpipe.reporting.comparison.build_comparison (tests/reporting/test_comparison.py); tests/reporting/test_report_browser.py opens both
reports in Chromium."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from segpipe.evaluation.crossval import write_crossval
from segpipe.reporting.comparison import RunResult

CLASSES = ["pet", "background", "border"]
N_IMAGES = 7
GALLERY_SIZE = 2
TEST_MIOU = 0.71234


def _write_split(root: Path) -> dict[str, Path]:
    """Images, truth masks, predictions, manifest and per-image scores for N_IMAGES tiny images.

    Image ``img<i>`` has i wrongly predicted pixels, so its mean IoU falls with i.
    """
    rng = np.random.default_rng(0)
    predictions = root / "pred"
    (predictions / "masks").mkdir(parents=True)
    (root / "data").mkdir()
    manifest, scores = [], []
    for i in range(N_IMAGES):
        image_id = f"img{i}"
        truth = np.zeros((12, 16), dtype=np.uint8)
        truth[:, 8:] = 1
        truth[0, :] = 255
        pred = truth.copy()
        pred[0, :] = 0
        pred[1, :i] = 2
        rgb = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        # Any Pillow-readable format: alternate JPEG and PNG originals.
        image_path = root / "data" / f"{image_id}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(rgb).save(image_path)
        mask_path = root / "data" / f"{image_id}_mask.png"
        Image.fromarray(truth).save(mask_path)
        Image.fromarray(pred).save(predictions / "masks" / f"{image_id}.png")
        manifest.append({"id": image_id, "image": image_path, "mask": mask_path, "group": "a"})
        miou = 0.9 - 0.1 * i
        scores.append(
            {
                "id": image_id,
                "pixel_accuracy": 0.95,
                "mean_iou": miou,
                "mean_dice": miou + 0.05,
                "foreground_iou": miou,
                "iou_pet": miou,
                "iou_background": 0.9,
                "iou_border": float("nan"),
            }
        )
    pd.DataFrame(manifest).to_csv(root / "test.csv", index=False)
    # Shuffled rows: the gallery must rank them itself.
    pd.DataFrame(scores).sample(frac=1, random_state=1).to_csv(root / "per_image.csv", index=False)
    return {
        "manifest_csv": root / "test.csv",
        "per_image_csv": root / "per_image.csv",
        "predictions_dir": predictions,
    }


def _metrics(split: str, mean_iou: float) -> dict:
    return {
        "split": split,
        "n_images": N_IMAGES,
        "pixel_accuracy": 0.93,
        "mean_iou": mean_iou,
        "mean_dice": 0.8,
        "foreground_iou": 0.85,
        "classes": CLASSES,
        "per_class": {
            "pet": {"iou": 0.8, "dice": 0.9},
            "background": {"iou": 0.62, "dice": 0.7},
            "border": {"iou": None, "dice": None},
        },
    }


def report_inputs(tmp_path: Path) -> dict:
    """The fields of build_report's ReportInputs, with every input written under tmp_path."""
    root = tmp_path / "inputs"
    root.mkdir()
    (root / "metrics.json").write_text(json.dumps(_metrics("test", TEST_MIOU)))
    (root / "val_metrics.json").write_text(json.dumps(_metrics("val", 0.65)))
    (root / "per_class.csv").write_text(
        "class_id,class_name,iou,dice,true_pixels,predicted_pixels\n"
        "0,pet,0.8,0.9,1200,1100\n"
        "1,background,0.62,0.7,3000,3100\n"
        "2,border,,,0,0\n"
    )
    (root / "confusion.csv").write_text(
        "true,pet,background,border\npet,1000,150,50\nbackground,100,2900,0\nborder,0,0,0\n"
    )
    (root / "history.csv").write_text(
        "epoch,train_loss,val_loss,val_miou,val_dice,lr,seconds,images_per_s\n"
        "1,1.2,1.1,0.40,0.50,0.001,60.5,20.1\n"
        "2,0.8,0.9,0.55,0.62,0.0005,59.5,21.0\n"
        "3,0.6,0.85,0.52,0.60,0.0001,61.0,20.4\n"
    )
    (root / "train.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        "3723.5\t1:02:03\t2048.3\t4096.0\t1900.0\t1950.0\t10.0\t5.0\t180.0\t6000.0\n"
    )
    return {
        "metrics_json": root / "metrics.json",
        "val_metrics_json": root / "val_metrics.json",
        "per_class_csv": root / "per_class.csv",
        "confusion_csv": root / "confusion.csv",
        "history_csv": root / "history.csv",
        **_write_split(root),
        "class_names": CLASSES,
        "config": {"dataset": "oxford_pets", "train": {"epochs": 3, "lr": 0.001}},
        "benchmarks": {"train": root / "train.tsv"},
        "gallery_size": GALLERY_SIZE,
        "repo_dir": tmp_path,
    }


# Scores of the fold models of fold_report_inputs, per fold: validation and test.
FOLD_VAL = [
    {"mean_iou": 0.60, "mean_dice": 0.70, "pixel_accuracy": 0.90, "foreground_iou": 0.50},
    {"mean_iou": 0.66, "mean_dice": 0.74, "pixel_accuracy": 0.91, "foreground_iou": 0.56},
    {"mean_iou": 0.69, "mean_dice": 0.80, "pixel_accuracy": 0.95, "foreground_iou": 0.61},
]
FOLD_TEST = [
    {"mean_iou": 0.70, "mean_dice": 0.78, "pixel_accuracy": 0.92, "foreground_iou": 0.60},
    {"mean_iou": 0.72, "mean_dice": 0.79, "pixel_accuracy": 0.93, "foreground_iou": 0.62},
    {"mean_iou": 0.77, "mean_dice": 0.83, "pixel_accuracy": 0.94, "foreground_iou": 0.68},
]
# Per-class validation IoU per fold; no fold-0 mask or prediction holds "border".
FOLD_VAL_CLASS_IOU = [
    {"pet": 0.8, "background": 0.5, "border": None},
    {"pet": 0.7, "background": 0.6, "border": 0.1},
    {"pet": 0.9, "background": 0.55, "border": 0.2},
]
# Each fold's history: its validation mIoU per epoch (best: epochs 2, 3, 1) and seconds.
FOLD_HISTORY = [([0.40, 0.55, 0.52], 60.0), ([0.30, 0.50, 0.58], 40.0), ([0.61, 0.5, 0.45], 30.0)]
# Images per class in each fold's train and val parts: fold 1's val part lacks "border".
FOLD_CLASSES = [(9, 1), (10, 0), (8, 2)]


def _fold_metrics(split: str, scores: dict, class_iou: dict) -> dict:
    per_class = {name: {"iou": iou, "dice": iou} for name, iou in class_iou.items()}
    return {"split": split, "n_images": 3, **scores, "classes": CLASSES, "per_class": per_class}


def _write_history(path: Path, val_miou: list[float], seconds: float) -> None:
    epochs = range(1, len(val_miou) + 1)
    pd.DataFrame(
        {
            "epoch": epochs,
            "train_loss": [1.0 / e for e in epochs],
            "val_loss": [1.1 / e for e in epochs],
            "val_miou": val_miou,
            "val_dice": [v + 0.05 for v in val_miou],
            "lr": 0.001,
            "seconds": seconds,
            "images_per_s": 20.0,
        }
    ).to_csv(path, index=False)


def _write_fold(root: Path, fold: int) -> dict[str, Path]:
    """Fold ``fold``'s val and test metrics.json, val per_image.csv, history.csv and
    classes.csv under root/fold<fold>."""
    out = root / f"fold{fold}"
    out.mkdir()
    paths = {name: out / name for name in ("val.json", "test.json", "per_image.csv")}
    paths["history"], paths["classes"] = out / "history.csv", out / "classes.csv"
    class_iou = FOLD_VAL_CLASS_IOU[fold]
    paths["val.json"].write_text(json.dumps(_fold_metrics("val", FOLD_VAL[fold], class_iou)))
    paths["test.json"].write_text(json.dumps(_fold_metrics("test", FOLD_TEST[fold], class_iou)))
    ids = [f"pool{fold}_{i}" for i in range(3)]
    pd.DataFrame({"id": ids, "mean_iou": FOLD_VAL[fold]["mean_iou"]}).to_csv(
        paths["per_image.csv"], index=False
    )
    _write_history(paths["history"], *FOLD_HISTORY[fold])
    train, val = FOLD_CLASSES[fold]
    paths["classes"].write_text(
        f"class_id,class_name,train,val\n0,pet,12,4\n1,background,12,4\n2,border,{train},{val}\n"
    )
    return paths


def fold_report_inputs(tmp_path: Path, *, ensemble: bool = True) -> dict:
    """The fields of build_report's ReportInputs of a run with 3 folds (scores FOLD_VAL and
    FOLD_TEST) and, with ``ensemble``, the fold ensemble; report_inputs' test outputs stand for the model
    the test sections show (the ensemble, else fold 0). The cross-validation summary is
    written by segpipe.evaluation.crossval.write_crossval."""
    inputs = report_inputs(tmp_path)
    root = tmp_path / "folds"
    root.mkdir()
    folds = [_write_fold(root, fold) for fold in range(3)]
    write_crossval(
        root / "crossval" / "metrics.json",
        root / "crossval" / "folds.csv",
        root / "crossval" / "per_image.csv",
        val_metrics=[f["val.json"] for f in folds],
        test_metrics=[f["test.json"] for f in folds],
        val_per_image=[f["per_image.csv"] for f in folds],
        class_names=CLASSES,
        ensemble_test_metrics=inputs["metrics_json"] if ensemble else None,
    )
    return {
        **inputs,
        "val_metrics_json": folds[0]["val.json"],
        "history_csv": folds[0]["history"],
        "fold_histories": [f["history"] for f in folds],
        "crossval_json": root / "crossval" / "metrics.json",
        "crossval_folds_csv": root / "crossval" / "folds.csv",
        "model": "ensemble" if ensemble else "fold0",
        "fold_class_presence_csvs": [f["classes"] for f in folds],
    }


# Pixels (of rows 2..11) where run "deep" predicts otherwise than run "wide", per image.
DEEP_CHANGES = {"img0": 0, "img1": 5, "img2": 20, "img3": 20, "img4": 3, "img5": 10, "img6": 1}


def make_run(
    tmp_path: Path,
    name: str,
    *,
    val: float,
    test: float,
    overrides: dict,
    shift: np.ndarray | float = 0.0,
    changes: dict[str, int] | None = None,
    parameters: int | None = None,
) -> RunResult:
    """One run's outputs under tmp_path/name, from report_inputs' fake outputs: val and test
    mIoU as given, per-image mean IoU that of report_inputs plus ``shift`` (per image, by id
    order), and in each image ``changes[id]`` labelled pixels predicted as another class."""
    (tmp_path / name).mkdir()
    inputs = report_inputs(tmp_path / name)
    for key, value in (("val_metrics_json", val), ("metrics_json", test)):
        metrics = json.loads(inputs[key].read_text())
        inputs[key].write_text(json.dumps({**metrics, "mean_iou": value}))
    per_image = pd.read_csv(inputs["per_image_csv"]).sort_values("id")
    per_image["mean_iou"] += shift
    per_image.to_csv(inputs["per_image_csv"], index=False)
    masks = inputs["predictions_dir"] / "masks"
    for image_id, count in (changes or {}).items():
        pred = np.asarray(Image.open(masks / f"{image_id}.png")).copy()
        pred[0, :] = 1  # ignored in the truth: never counts as disagreement
        body = pred[2:].reshape(-1)
        body[:count] = 1 - body[:count]  # classes 0 and 1 swapped
        Image.fromarray(pred).save(masks / f"{image_id}.png")
    model_json = tmp_path / name / "model.json"
    if parameters is not None:
        model_json.write_text(
            json.dumps({"arch": "unet", "encoder": "x", "parameters": parameters})
        )
    return RunResult(
        name=name,
        overrides=overrides,
        report_html=f"../runs/{name}/report/report.html",
        val_metrics=inputs["val_metrics_json"],
        test_metrics=inputs["metrics_json"],
        test_per_class=inputs["per_class_csv"],
        test_per_image=inputs["per_image_csv"],
        history=inputs["history_csv"],
        model_json=model_json,
        test_manifest=inputs["manifest_csv"],
        test_predictions=inputs["predictions_dir"],
    )


def three_runs(tmp_path: Path) -> list[RunResult]:
    """Three runs whose test order (deep, base, wide) is not their validation order (wide,
    deep, base): run "wide" is selected."""
    noise = np.random.default_rng(3).normal(0.0, 0.01, N_IMAGES)
    return [
        make_run(tmp_path, "base", val=0.60, test=0.80, overrides={}, shift=-0.05),
        make_run(
            tmp_path,
            "wide",
            val=0.70,
            test=0.70,
            overrides={"train.encoder": "resnet50", "train.lr": 0.0005},
            parameters=1234567,
        ),
        make_run(
            tmp_path,
            "deep",
            val=0.65,
            test=0.90,
            overrides={"model.depth": 5, "train.augment": {"flip": True}},
            shift=0.1 + noise,
            changes=DEEP_CHANGES,
            parameters=89,
        ),
    ]
