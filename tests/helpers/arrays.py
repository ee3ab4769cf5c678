"""A preprocessed array of random pairs and the options that train on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.repo import TINY_MODEL, TRAIN_DEFAULTS

CLASSES = ["a", "b", "c"]
OPTIONS = {
    **TRAIN_DEFAULTS,
    **TINY_MODEL,
    **dict(
        epochs=3,
        batch_size=4,
        image_size=32,
        device="cpu",
        num_workers=0,
        decoder_dropout=0.1,  # dropout makes the RNG part of what must replay exactly
        augment={"hflip": 0.5, "rotate": 10},
    ),
}


def make_array(path: Path, n: int, seed: int) -> Path:
    """(n, 32, 32, 4) uint8: a bright square (class 0) on noise (class 1) with a rim (class 2)."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((n, 32, 32, 4), dtype=np.uint8)
    arr[..., :3] = rng.integers(0, 90, size=(n, 32, 32, 3))
    arr[..., 3] = 1
    for i in range(n):
        y, x, s = *rng.integers(2, 14, size=2), int(rng.integers(8, 16))
        arr[i, y : y + s, x : x + s, :3] = 200
        arr[i, y : y + s, x : x + s, 3] = 2
        arr[i, y + 1 : y + s - 1, x + 1 : x + s - 1, 3] = 0
    np.save(path, arr)
    return path
