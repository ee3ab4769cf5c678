"""Prediction speed on the CPU: images/s of segpipe predict's engine with torch and with
onnxruntime, without and with flip TTA (hflip). Writes one JSON file.

The model is the default config's (config/config.yaml: Unet, resnet34 encoder, 256 x 256, its
classes), randomly initialised (no download), saved as a checkpoint and exported with
segpipe.inference.onnx.export_onnx. ``--images`` random 256 x 256 images are predicted ``--batch-size``
at a time in resize mode (segpipe predict's default) through the same engine
(segpipe.inference.engine.predict_images), by the checkpoint's torch model (segpipe.inference.folder.load_model)
and by the ONNX file through onnxruntime (segpipe.inference.folder.load_onnx_model), both with every core.
Reading and writing files is left out. One batch warms each up untimed; the JSON holds the best
of ``--repeats`` passes over the images.

    python tools/bench/bench_predict.py --out tools/bench/results/predict-cpu-2cores.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from record import machine, write_result

from segpipe.inference.engine import predict_images, with_tta
from segpipe.inference.folder import Predictor, load_model, load_onnx_model
from segpipe.inference.onnx import export_onnx
from segpipe.models.checkpoints import model_from_config, save_checkpoint
from segpipe.workflow.config import load_schema, validate_config

REPO = Path(__file__).resolve().parents[2]
TTA = {"tta_off": [], "hflip": ["hflip"]}


def default_config() -> dict:
    """config/config.yaml validated, its defaults filled in (model names not checked)."""
    raw = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return validate_config(raw, load_schema(REPO / "config" / "schema.yaml"), check_models=False)


def write_models(folder: Path, config: dict) -> tuple[Path, Path]:
    """A randomly initialised checkpoint of the config's model and its ONNX export."""
    model = model_from_config(config)
    checkpoint = folder / "best.pt"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "config": config})
    return checkpoint, export_onnx(checkpoint, folder / "model.onnx")


def images_per_s(model: Predictor, images: list[np.ndarray], tta: list[str], args) -> float:
    """Best of ``args.repeats`` timed passes over ``images``, after one untimed batch."""
    score = with_tta(model.score, tta)
    batches = [images[i : i + args.batch_size] for i in range(0, len(images), args.batch_size)]
    predict_images(batches[0], score, model.input, mode="resize")
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for batch in batches:
            predict_images(batch, score, model.input, mode="resize")
        best = min(best, time.perf_counter() - start)
    return round(len(images) / best, 2)


def versions() -> dict[str, str]:
    """The installed versions of what the figures depend on."""
    names = ["torch", "onnxruntime", "onnx", "segmentation_models_pytorch", "segpipe"]
    return {name: importlib.metadata.version(name) for name in names}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    config = default_config()
    size = int(config["train"]["image_size"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, onnx_file = write_models(Path(tmp), config)
        models = {
            "torch": load_model([checkpoint], device="cpu"),
            "onnxruntime": load_onnx_model(onnx_file, threads=cores),
        }
        load = os.getloadavg()[0]
        speed = {
            name: {view: images_per_s(model, images, tta, args) for view, tta in TTA.items()}
            for name, model in models.items()
        }
    result = {
        "benchmark": "images/s of segpipe predict's engine on the CPU, torch vs onnxruntime",
        **machine(),
        "versions": versions(),
        "settings": {
            "model": f"{config['train']['arch']}-{config['train']['encoder']}",
            "image_size": size,
            "images": args.images,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "mode": "resize",
            "threads": cores,
        },
        "load_average_1min_before": round(load, 2),
        "images_per_s": speed,
        "onnxruntime_over_torch": {
            view: round(speed["onnxruntime"][view] / speed["torch"][view], 2) for view in TTA
        },
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
