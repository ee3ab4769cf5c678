"""Reading images, masks and split manifests; the ImageNet statistics models are fed with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from segpipe.images import load_rgb, open_image  # live in segpipe.images, free of torch
from segpipe.io import read_table

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "load_mask", "load_rgb", "read_manifest"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_mask(path: str | Path) -> np.ndarray:
    """A class-id mask written by the remap step: (H, W) uint8."""
    with open_image(path) as img:  # the size of its image, which remap checked
        return np.array(img, dtype=np.uint8)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A split manifest; ids, groups and paths as written (``NA`` or ``nan`` stay strings)."""
    return read_table(path)
