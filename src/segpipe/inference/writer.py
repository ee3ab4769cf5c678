"""Writing one image's prediction: its mask and (when asked) overlay and probabilities, at the
paths of :mod:`segpipe.data.predictions`; used for whole splits and folders of new images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segpipe.data import predictions
from segpipe.data.colors import overlay
from segpipe.models.argmax import class_ids


def _save(path: Path, save: Callable[[Path], None]) -> None:
    """``save(path)``, its folder made first (a name may hold sub-folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save(path)


def write_prediction(
    out_dir: Path,
    name: str,
    rgb: np.ndarray | None,
    probabilities: torch.Tensor,
    classes: Sequence[str],
    *,
    keep_probabilities: bool = False,
    overlay_alpha: float = 0.5,
) -> Path:
    """Write the prediction of the image named ``name`` into ``out_dir`` from its class
    ``probabilities`` (C, H, W, at the image's size): the mask of the most probable classes
    (:func:`segpipe.models.argmax.class_ids`), the overlay of the image ``rgb`` (H, W, 3 uint8;
    None: no overlay) and, with ``keep_probabilities``, the probabilities times 255 rounded
    (uint8) with the ``classes``. Returns the mask's path.

    ``out_dir`` is a folder being written whole (the temporary folder of
    :func:`segpipe.io.atomic_dir`, renamed onto the output once every image is written), so its
    files are written in place: an interrupted run leaves no output folder, and no file of one
    is ever half-written. (A temporary file and rename per file would rescan the folder for
    stale temporaries at each write, quadratic in the number of images.)"""
    mask = class_ids(probabilities, 0).to(torch.uint8).cpu().numpy()
    mask_path = predictions.mask_path(out_dir, name)
    _save(mask_path, lambda tmp: Image.fromarray(mask, mode="L").save(tmp, format="PNG"))
    if rgb is not None:
        shaded = Image.fromarray(overlay(rgb, mask, len(classes), overlay_alpha))
        _save(
            predictions.overlay_path(out_dir, name),
            lambda tmp: shaded.save(tmp, format="JPEG", quality=90),
        )
    if keep_probabilities:
        compact = (probabilities.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        _save(
            predictions.probabilities_path(out_dir, name),
            lambda tmp: np.savez_compressed(
                tmp, probabilities=compact, classes=np.array(list(classes))
            ),
        )
    return mask_path
