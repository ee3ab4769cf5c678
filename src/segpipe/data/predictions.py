"""The on-disk layout of a predictions folder, the one place that spells it.

A folder of predictions (a split's, or a folder of new images') holds, per image name:

- ``masks/<name>.png``: class ids, uint8, at the image's own size;
- ``overlays/<name>.jpg``: the classes' colours over the image, where ``predict.overlays``
  asks for them (:func:`split_overlays`, :func:`folder_overlays`);
- ``probabilities/<name>.npz`` (only when asked for): the class probabilities;

and, for a folder of new images, ``summary.csv`` listing every input. A model's predictions
of its splits (rule predict) are one folder holding a predictions folder per split,
:func:`split_dir`. ``<name>`` is a split
row's id, or a new image's path below its folder without its suffix (``a/x``): it may hold
``/`` (sub-folders), dots, spaces and any Unicode, and is used as it is (``x.tar`` ->
``masks/x.tar.png``). Prediction writes, evaluation and the reports read through these
functions. Torch-free: every stage may import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

MASKS = "masks"
OVERLAYS = "overlays"
PROBABILITIES = "probabilities"
SUMMARY = "summary.csv"
MASK_SUFFIX = ".png"
OVERLAY_SUFFIX = ".jpg"
PROBABILITIES_SUFFIX = ".npz"
NO_TTA = "no_tta"
# predict.overlays: which predictions get a colour overlay besides their mask (config/schema.yaml).
OVERLAY_CHOICES = ("gallery", "all", "none")


def split_overlays(predict: Mapping[str, Any]) -> bool:
    """Whether rule predict writes the overlay of every image of a model's splits, by the
    ``predict`` options: only with ``overlays: all``. The run report's galleries are drawn from the masks, so nothing reads them."""
    return _overlay_choice(predict) == "all"


def folder_overlays(predict: Mapping[str, Any]) -> bool:
    """Whether the predictions of a folder of new images (rules infer and infer_selected, as
    ``segpipe predict`` writes them) get overlays, by the ``predict`` options: unless
    ``overlays: none``. The reports' galleries of
    those images show them (drawn from the image and mask where there are none)."""
    return _overlay_choice(predict) != "none"


def _overlay_choice(predict: Mapping[str, Any]) -> str:
    choice = predict["overlays"]
    if choice not in OVERLAY_CHOICES:
        raise ValueError(f"predict.overlays: {choice!r}; use one of {list(OVERLAY_CHOICES)}")
    return choice


def _checked(name: str) -> str:
    """``name`` when it names a file below a folder: not empty, not absolute, no ``.``/``..``
    parts, no empty parts; raises ValueError naming it otherwise."""
    parts = str(name).split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"prediction name {name!r}: not a relative path below the predictions folder "
            "(empty, absolute, or with an empty, '.' or '..' part)"
        )
    return str(name)


def split_dir(folder: str | os.PathLike, split: str, *, tta: bool = True) -> Path:
    """The predictions of ``split`` in a model's folder of predictions (rule predict):
    ``folder/<split>``, with the configured flips (predict.tta, or none), or
    ``folder/no_tta/<split>``, the same model without flips (written only with predict.tta)."""
    return Path(folder) / split if tta else Path(folder) / NO_TTA / split


def mask_name(name: str) -> str:
    """The mask's path relative to the predictions folder: ``a/x`` -> ``masks/a/x.png``."""
    return f"{MASKS}/{_checked(name)}{MASK_SUFFIX}"


def mask_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder/masks/<name>.png``."""
    return Path(folder) / mask_name(name)


def overlay_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder/overlays/<name>.jpg``."""
    return Path(folder) / OVERLAYS / f"{_checked(name)}{OVERLAY_SUFFIX}"


def probabilities_path(folder: str | os.PathLike, name: str) -> Path:
    """``folder/probabilities/<name>.npz``."""
    return Path(folder) / PROBABILITIES / f"{_checked(name)}{PROBABILITIES_SUFFIX}"


def summary_path(folder: str | os.PathLike) -> Path:
    """``folder/summary.csv``."""
    return Path(folder) / SUMMARY


def name_of_mask(output: str | os.PathLike) -> str:
    """The image name of a mask path as ``summary.csv`` lists it (:func:`mask_name`):
    ``masks/a/x.png`` -> ``a/x``. A path not below ``masks/`` (a full path) gives its file
    name alone, without sub-folders."""
    path = PurePosixPath(Path(output).as_posix())
    below = path.relative_to(MASKS) if path.parts[:1] == (MASKS,) else PurePosixPath(path.name)
    text = below.as_posix()
    return text[: -len(MASK_SUFFIX)] if text.endswith(MASK_SUFFIX) else text
