"""Reading class-id masks: the one reader every step after remap uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segpipe.data.images import open_image


def load_mask(path: str | Path) -> np.ndarray:
    """A class-id mask written by the remap step: (H, W) uint8."""
    with open_image(path) as img:  # the size of its image, which remap checked
        return np.array(img, dtype=np.uint8)
