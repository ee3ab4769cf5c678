"""Reading images, masks and split manifests, and the per-file reference Dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from segpipe.images import load_rgb  # lives in segpipe.images, free of torch
from segpipe.io import read_table

__all__ = ["SegmentationDataset", "load_mask", "load_rgb", "read_manifest"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_mask(path: str | Path) -> np.ndarray:
    """A class-id mask written by the remap step: (H, W) uint8."""
    with Image.open(path) as img:
        return np.array(img, dtype=np.uint8)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A split manifest; ids, groups and paths as written (``NA`` or ``nan`` stay strings)."""
    return read_table(path)


def to_model_input(image: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) -> float normalised with ImageNet statistics (what smp encoders expect)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


class SegmentationDataset(Dataset):
    """Rows of a split manifest (id, image, mask) as (image, mask) tensors at ``image_size``².

    Decodes and resizes the files of each item in ``__getitem__``, with an optional per-sample
    torchvision v2 ``augment``: the textbook loader (smp's examples do this). Training and
    prediction read preprocessed arrays instead (:mod:`segpipe.arrays`); this class is the
    reference those arrays are tested against and the naive baseline of the benchmark.

    With ``with_mask=False`` items are (image, id, original height, original width), for prediction.
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        image_size: int,
        *,
        augment: v2.Transform | None = None,
        with_mask: bool = True,
    ):
        self.rows = manifest.to_dict("records")
        self.size = (image_size, image_size)
        self.augment = augment
        self.with_mask = with_mask

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        img = load_rgb(row["image"])
        width, height = img.size
        pixels = np.array(img.resize(self.size, Image.BILINEAR))
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))
        if not self.with_mask:
            return to_model_input(image), row["id"], height, width
        mask_img = Image.fromarray(load_mask(row["mask"])).resize(self.size, Image.NEAREST)
        mask = tv_tensors.Mask(torch.from_numpy(np.array(mask_img)))
        if self.augment is not None:
            image, mask = self.augment(image, mask)
        return to_model_input(image), mask.long()
