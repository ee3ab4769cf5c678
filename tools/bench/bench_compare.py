"""Comparison-report benchmark: what segpipe.reporting.comparison.build_comparison costs for many runs.

Fabricates the outputs of ``--runs`` runs on one test split (``--images`` images of
``--size`` x ``--size`` pixels, 3 classes: an elliptic pet, background and the border between
them, as the Oxford-IIIT Pet trimaps, and a thin ignored frame), each run predicting the pet a
little off by its own amount, with ``--epochs``-epoch histories, val and test metrics,
per-class and per-image scores from the masks, and model.json. Then builds the comparison
(leaderboard, figures, paired bootstraps and disagreement galleries of every run against the
selected one) ``--repeats`` times; the JSON holds the median wall time. The inputs are written
once, outside the timing.

    python tools/bench/bench_compare.py --out tools/bench/results/compare-cpu-2cores.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from record import machine, write_result

from segpipe.reporting.comparison import RunResult, build_comparison

CLASSES = ["pet", "background", "border"]
IGNORE = 255
GOAL_S = 30.0


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    """A boolean (size, size) mask of the ellipse with centre (cy, cx) and radii (ry, rx)."""
    y, x = np.ogrid[:size, :size]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def _trimap(size: int, shape: tuple[float, float, float, float], border: float = 0.08):
    """A trimap (0 pet, 1 background, 2 border) of the ellipse ``shape``, with a 2-pixel frame
    of ignored pixels."""
    cy, cx, ry, rx = shape
    mask = np.ones((size, size), dtype=np.uint8)
    mask[_ellipse(size, cy, cx, ry * (1 + border), rx * (1 + border))] = 2
    mask[_ellipse(size, cy, cx, ry * (1 - border), rx * (1 - border))] = 0
    return mask


def make_test_split(root: Path, images: int, size: int, rng: np.random.Generator) -> tuple:
    """Images (JPEG), truth masks and the manifest; returns the manifest path and the pets."""
    (root / "data").mkdir(parents=True)
    rows, shapes = [], {}
    y, x = np.mgrid[:size, :size] / size
    for i in range(images):
        image_id = f"pet_{i:04d}"
        shape = (
            size * rng.uniform(0.35, 0.65),
            size * rng.uniform(0.35, 0.65),
            size * rng.uniform(0.15, 0.3),
            size * rng.uniform(0.15, 0.3),
        )
        truth = _trimap(size, shape)
        truth[:2], truth[-2:], truth[:, :2], truth[:, -2:] = IGNORE, IGNORE, IGNORE, IGNORE
        base = np.stack([y, x, (x + y) / 2], axis=2) * 160 + rng.uniform(0, 60, 3)
        base[truth == 0] += 50
        rgb = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "data" / f"{image_id}.jpg", quality=90)
        Image.fromarray(truth).save(root / "data" / f"{image_id}.png")
        rows.append(
            {
                "id": image_id,
                "image": root / "data" / f"{image_id}.jpg",
                "mask": root / "data" / f"{image_id}.png",
                "group": image_id,
                "height": size,
                "width": size,
            }
        )
        shapes[image_id] = (shape, truth)
    pd.DataFrame(rows).to_csv(root / "test.csv", index=False)
    return root / "test.csv", shapes


def _scores(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice (NaN for a class in neither mask), ignored pixels left out."""
    keep = truth != IGNORE
    n = len(CLASSES)
    cm = np.bincount(n * truth[keep] + pred[keep], minlength=n * n).reshape(n, n)
    tp = np.diag(cm).astype(float)
    fp, fn = cm.sum(0) - tp, cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)


def make_run(root: Path, name: str, shapes: dict, manifest: Path, quality: float, rng, epochs: int):
    """One run's outputs: predictions off by ``quality``-scaled jitter, scores, history."""
    out = root / "runs" / name
    (out / "predict" / "test" / "masks").mkdir(parents=True)
    rows, ious, dices = [], [], []
    for image_id, ((cy, cx, ry, rx), truth) in shapes.items():
        jitter = (1 - quality) * rng.normal(0, 1, 4)
        size = truth.shape[0]
        shape = (cy + 8 * jitter[0], cx + 8 * jitter[1], ry * (1 + 0.2 * jitter[2]), rx)
        pred = _trimap(size, (*shape[:3], rx * (1 + 0.2 * jitter[3])))
        Image.fromarray(pred).save(out / "predict" / "test" / "masks" / f"{image_id}.png")
        iou, dice = _scores(truth, pred)
        ious.append(iou)
        dices.append(dice)
        rows.append({"id": image_id, "mean_iou": np.nanmean(iou), "mean_dice": np.nanmean(dice)})
        rows[-1].update({f"iou_{c}": v for c, v in zip(CLASSES, iou, strict=True)})
    pd.DataFrame(rows).to_csv(out / "per_image.csv", index=False)
    iou, dice = np.nanmean(ious, axis=0), np.nanmean(dices, axis=0)
    per_class = pd.DataFrame({"class_id": range(3), "class_name": CLASSES, "iou": iou})
    per_class.assign(dice=dice, true_pixels=1000, predicted_pixels=1000).to_csv(
        out / "per_class.csv", index=False
    )
    for split, miou in (("val", iou.mean() + rng.normal(0, 0.01)), ("test", iou.mean())):
        metrics = {"split": split, "n_images": len(shapes), "pixel_accuracy": 0.9}
        metrics |= {"mean_iou": miou, "mean_dice": dice.mean(), "foreground_iou": iou[0]}
        (out / f"{split}_metrics.json").write_text(json.dumps(metrics))
    t = np.arange(1, epochs + 1)
    pd.DataFrame(
        {
            "epoch": t,
            "train_loss": 1.2 * np.exp(-t / (8 + 10 * quality)) + 0.1,
            "val_loss": 1.1 * np.exp(-t / (8 + 10 * quality)) + 0.2 + rng.normal(0, 0.02, epochs),
            "val_miou": iou.mean() * (1 - np.exp(-t / 6)) + rng.normal(0, 0.01, epochs),
            "val_dice": dice.mean() * (1 - np.exp(-t / 6)),
            "lr": 1e-3 * 0.5 * (1 + np.cos(np.pi * t / epochs)),
            "seconds": rng.uniform(50, 70, epochs),
            "images_per_s": rng.uniform(40, 60, epochs),
        }
    ).to_csv(out / "history.csv", index=False)
    (out / "model.json").write_text(
        json.dumps({"arch": "Unet", "encoder": name, "parameters": 24_436_369})
    )
    return RunResult(
        name=name,
        overrides={"train.lr": round(float(quality) * 1e-3, 6), "train.encoder": f"enc{name[-2:]}"},
        report_html=f"../runs/{name}/report/report.html",
        val_metrics=out / "val_metrics.json",
        test_metrics=out / "test_metrics.json",
        test_per_class=out / "per_class.csv",
        test_per_image=out / "per_image.csv",
        history=out / "history.csv",
        model_json=out / "model.json",
        test_manifest=manifest,
        test_predictions=out / "predict" / "test",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="copy the comparison (results/compare) here")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, shapes = make_test_split(root, args.images, args.size, rng)
        qualities = np.linspace(0.3, 0.9, args.runs)
        runs = [
            make_run(root, f"run{i:02d}", shapes, manifest, q, rng, args.epochs)
            for i, q in enumerate(qualities)
        ]
        walls = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            build_comparison(
                root / "compare" / "report.html",
                root / "compare" / "figures",
                root / "compare" / "leaderboard.csv",
                runs,
                class_names=CLASSES,
            )
            walls.append(time.perf_counter() - start)
        html_mb = (root / "compare" / "report.html").stat().st_size / 2**20
        if args.keep:
            shutil.copytree(root / "compare", args.keep, dirs_exist_ok=True)
    result = {
        "benchmark": "segpipe.reporting.comparison.build_comparison (defaults: gallery 3, 10,000 resamples)",
        **machine(),
        "runs": args.runs,
        "test_images": args.images,
        "image_size": args.size,
        "classes": len(CLASSES),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "wall_s": round(statistics.median(walls), 3),
        "wall_s_each": [round(w, 3) for w in walls],
        "goal_s": GOAL_S,
        "html_mb": round(html_mb, 2),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
