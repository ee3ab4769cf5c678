"""Masks written as the datasets write them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def voc_palette() -> list[int]:
    """The Pascal VOC colour map (256 entries, flattened), as the devkit's bitget recipe."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def save_palette_mask(path: Path, ids: np.ndarray) -> None:
    img = Image.fromarray(ids.astype(np.uint8), mode="P")
    img.putpalette(voc_palette())
    img.save(path)
