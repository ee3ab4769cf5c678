"""What training and prediction share on the device: the device, autocast and batch preparation.

- the device (:func:`resolve_device`) and the autocast dtype (:func:`amp_dtype`,
  :func:`autocast`) a run uses;
- images as the models see them: ImageNet-normalised on the device (:func:`normalize`,
  :func:`prepare_batch`), padded to what an encoder's downsampling needs
  (:func:`pad_to_multiple`);
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from segpipe.data.arrays import replicate_padding
from segpipe.logs import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

if TYPE_CHECKING:
    from segpipe.data.arrays import Batch
    from segpipe.training.augment import BatchAugment

# ----------------------------------------------------------------------------- device


class DeviceError(UserError, RuntimeError):
    """The device asked for is not there (CUDA on a machine without a visible GPU)."""


def resolve_device(name: str, rank: int = 0) -> torch.device:
    """The device of config option ``device``: ``auto`` is CUDA where visible, else the CPU;
    on CUDA, GPU ``rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "config option 'train.device' is 'cuda' but no CUDA device is visible"
            )
        return torch.device("cuda", rank)
    return torch.device(name)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``auto`` is bf16 on CUDA (fp16 where bf16 is unsupported), off on CPU."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[setting]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type; full precision when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


# ----------------------------------------------------------------------------- batches


@functools.cache
def _normalize_constants(device: torch.device, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / (std * scale), mean / std) as (1, 3, 1, 1) tensors, made once per device: building
    them from Python lists every step would be a host-to-device copy that waits for the GPU."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (1 / (std * scale)).to(device), (mean / std).to(device)


def normalize(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B, 3, H, W), or float in [0, 1] after augmentation -> float, ImageNet-normalised,
    as smp encoders expect (a new tensor; one conversion pass, then in place)."""
    mul, sub = _normalize_constants(images.device, 255.0 if images.dtype == torch.uint8 else 1.0)
    out = images.to(torch.float32, copy=True)
    out.mul_(mul).sub_(sub)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def prepare_batch(
    batch: Batch,
    device: torch.device,
    channels_last: bool,
    augment: BatchAugment | None = None,
    *,
    padding_label: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch -> model-ready images and long masks on the device, augmented there
    (per-sample seeds) when ``augment`` is given. ``padding_label``: the mask label of the
    padding of samples kept at a scale (the run's ignore index); with it, the padding is filled
    with each image's edge pixels, as prediction fills it
    (:func:`segpipe.data.arrays.replicate_padding`)."""
    images, masks = batch.unpack(device)
    if padding_label is not None:
        images = replicate_padding(images, masks, padding_label)
    # One gather out of the packed RGB+mask layout into the layout the model wants; the passes
    # after it run over dense memory.
    layout = torch.channels_last if channels_last else torch.contiguous_format
    images = images.contiguous(memory_format=layout)
    if augment:
        images, masks = augment(images, masks, batch.seeds)
    return normalize(images, channels_last), masks.long()


def pad_to_multiple(
    images: torch.Tensor, masks: torch.Tensor, ignore_index: int, multiple: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and masks padded at the bottom and right to a multiple of ``multiple`` (what an
    encoder's downsampling needs; whole images kept at their scale need it): the images with
    their bottom row and right column replicated, as everywhere an image is padded for a
    model, the masks with ``ignore_index``; unchanged when they are already."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return images, masks
    images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
    return images, F.pad(masks, (0, pad_w, 0, pad_h), value=ignore_index)
