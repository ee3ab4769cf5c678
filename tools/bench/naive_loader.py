"""The textbook per-file loader: the naive baseline of bench_train.py, and the reference the
preprocessed arrays (segpipe.data.arrays) are tested against (tests/data/test_arrays.py).

Training and prediction read preprocessed arrays instead; this is how smp's examples load data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from segpipe.data.images import load_rgb
from segpipe.data.masks import load_mask
from segpipe.models.device import IMAGENET_MEAN, IMAGENET_STD


def to_model_input(image: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) -> float normalised with ImageNet statistics (what smp encoders expect)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


class SegmentationDataset(Dataset):
    """Rows of a split manifest (id, image, mask) as (image, mask) tensors at ``image_size``².

    Decodes and resizes the files of each item in ``__getitem__``, with an optional per-sample
    torchvision v2 ``augment``.

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
