"""Tiny fake pipeline outputs for segpipe.report.build_report, shared by the report tests
(tests/test_report.py, and tests/test_report_browser.py, which opens the report in Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

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
    """Keyword arguments for build_report, with every input written under tmp_path."""
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
