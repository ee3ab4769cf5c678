"""A tiny dataset of PNG pairs preprocessed as the pipeline does, and a tiny model trained on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from segpipe.data.preprocess import preprocess_split
from segpipe.training.train import train_model

from helpers.repo import TINY_MODEL, TRAIN_DEFAULTS

CLASSES = ["pet", "background", "border"]
IGNORE = 255
IMAGE_SIZE = 32
SIZES = [(40, 40), (36, 44), (44, 36), (48, 40)]  # (height, width)
OPTIONS = {
    **TRAIN_DEFAULTS,
    **TINY_MODEL,
    **dict(
        encoder_weights=None,
        decoder_dropout=0.2,  # randomness that a resumed run must replay
        loss="ce+dice",
        lr=0.003,
        scheduler="cosine",
        epochs=2,
        batch_size=2,
        image_size=IMAGE_SIZE,
        seed=0,
        device="cpu",
        num_workers=0,
        augment={"hflip": 0.5},
    ),
}


# A UNet of 0.37 M parameters (checkpoints of 1.5 MB), for tests where its size does not matter.
TINY = {"encoder": "tu-resnet10t", "encoder_depth": 3, "decoder_channels": [16, 8, 4]}


def make_pair(rng: np.random.Generator, height: int, width: int, ignore_rows: int = 0):
    """A noisy image with one bright rectangle; mask 0 inside, 2 on its 2-pixel rim, 1 outside."""
    image = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    mask = np.ones((height, width), dtype=np.uint8)
    top = rng.integers(2, height // 3)
    left = rng.integers(2, width // 3)
    bottom = top + rng.integers(height // 3, height // 2)
    right = left + rng.integers(width // 3, width // 2)
    image[top:bottom, left:right] = rng.integers(150, 256, size=3, dtype=np.uint8)
    mask[top:bottom, left:right] = 2
    mask[top + 2 : bottom - 2, left + 2 : right - 2] = 0
    mask[:ignore_rows] = IGNORE
    return image, mask


def write_split(root: Path, name: str, n: int, seed: int, ignore_rows: int = 0) -> dict[str, Path]:
    """Images, masks and the manifest of one split, and its preprocessed array."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        height, width = SIZES[i % len(SIZES)]
        image, mask = make_pair(rng, height, width, ignore_rows)
        image_id = f"{name}_{i:02d}"
        image_path = root / "images" / f"{image_id}.png"
        mask_path = root / "masks" / f"{image_id}.png"
        Image.fromarray(image).save(image_path)
        Image.fromarray(mask, mode="L").save(mask_path)
        rows.append(
            {
                "id": image_id,
                "image": str(image_path),
                "mask": str(mask_path),
                "group": f"g{i % 2}",
                "height": height,
                "width": width,
            }
        )
    manifest = root / f"{name}.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    array = preprocess_split(manifest, root / f"{name}.npy", image_size=IMAGE_SIZE)
    return {"manifest": manifest, "array": array}


def tiny_splits(root: Path, n_train: int = 8) -> dict:
    """A train (``n_train`` images), val (4) and test (4) split under ``root``: images, masks,
    manifests and preprocessed arrays; ``root`` itself under "root"."""
    (root / "images").mkdir()
    (root / "masks").mkdir()
    return {
        "train": write_split(root, "train", n_train, seed=1),
        "val": write_split(root, "val", 4, seed=2),
        "test": write_split(root, "test", 4, seed=3),
        "root": root,
    }


def train(data: dict[str, dict[str, Path]], out: Path, **overrides):
    """train_model with the tiny options into ``out``; returns (checkpoint, paths)."""
    paths = {
        "best_path": out / "best.pt",
        "last_path": out / "last.pt",
        "history_path": out / "history.csv",
        "resume_dir": out / "resume",
    }
    ckpt = train_model(
        data["train"]["array"],
        data["val"]["array"],
        **paths,
        classes=CLASSES,
        ignore_index=IGNORE,
        threads=1,
        **{**OPTIONS, **overrides},
    )
    return ckpt, paths


def one_epoch_checkpoint(data: dict, out: Path) -> Path:
    """The best checkpoint of one tiny epoch on ``data``, torch's thread count left as found."""
    n = torch.get_num_threads()
    _, paths = train(data, out, epochs=1)
    torch.set_num_threads(n)
    return paths["best_path"]
