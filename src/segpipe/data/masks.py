"""Reading class-id masks: the one reader every step after remap uses (training data,
evaluation, the reports), for the masks remap writes and for predicted masks.

Raw dataset masks, of any mode, are read by :func:`segpipe.data.remap.read_raw_mask` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segpipe.data.images import open_image
from segpipe.logs import UserError

# 8-bit single-channel modes: greyscale, palette (its indices), 1-bit (0/1).
CLASS_ID_MODES = ("L", "P", "1")


class MaskReadError(UserError, ValueError):
    """A file that is no class-id mask (another mode than :data:`CLASS_ID_MODES`)."""


def load_mask(path: str | Path) -> np.ndarray:
    """A class-id mask written by the remap step or by prediction: (H, W) uint8; a palette PNG
    gives its indices. Raises :class:`MaskReadError` naming the file for one of another mode
    (RGB, 16-bit, float...), whose values are no class ids."""
    with open_image(path) as img:  # the size of its image, which remap checked
        if img.mode not in CLASS_ID_MODES:
            raise MaskReadError(
                f"{path}: not a class-id mask (image mode {img.mode}; expected an 8-bit "
                f"single-channel mode: {', '.join(CLASS_ID_MODES)})"
            )
        return np.array(img, dtype=np.uint8)
