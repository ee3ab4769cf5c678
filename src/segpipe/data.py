"""Reading images and masks, and the torch Dataset used by training and prediction."""

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

__all__ = ["SegmentationDataset", "build_augment", "load_mask", "load_rgb", "read_manifest"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_mask(path: str | Path) -> np.ndarray:
    """A class-id mask written by the remap step: (H, W) uint8."""
    with Image.open(path) as img:
        return np.array(img, dtype=np.uint8)


def read_manifest(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"id": str, "group": str}, keep_default_na=False)


def build_augment(
    *,
    hflip: float = 0.0,
    vflip: float = 0.0,
    rotate: float = 0.0,
    translate: float = 0.0,
    scale: float = 0.0,
    shear: float = 0.0,
    color_jitter: float = 0.0,
    ignore_index: int = 255,
) -> v2.Transform | None:
    """Augmentation applied identically to image and mask (torchvision v2 tv_tensors).

    Geometric transforms move the mask with nearest-neighbour interpolation; pixels shifted in
    from outside are ``ignore_index`` in the mask so they never count in loss or metrics.
    Colour jitter touches the image only.
    """
    steps: list[v2.Transform] = []
    if hflip:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if vflip:
        steps.append(v2.RandomVerticalFlip(vflip))
    if rotate or translate or scale or shear:
        steps.append(
            v2.RandomAffine(
                degrees=rotate,
                translate=(translate, translate) if translate else None,
                scale=(1 - scale, 1 + scale) if scale else None,
                shear=shear or None,
                fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index},
            )
        )
    if color_jitter:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
    return v2.Compose(steps) if steps else None


def to_model_input(image: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) -> float normalised with ImageNet statistics (what smp encoders expect)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


class SegmentationDataset(Dataset):
    """Rows of a split manifest (id, image, mask) as (image, mask) tensors at ``image_size``².

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
