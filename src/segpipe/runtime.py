"""What training and prediction share: the device, autocast, batch preparation and checkpoints.

- the device (:func:`resolve_device`) and the autocast dtype (:func:`amp_dtype`,
  :func:`autocast`) a run uses;
- images as the models see them: ImageNet-normalised on the device (:func:`normalize`,
  :func:`prepare_batch`), padded to what an encoder's downsampling needs
  (:func:`pad_to_multiple`);
- checkpoints: written atomically (:func:`save_checkpoint`), read (:func:`load_checkpoint`),
  published as rule outputs (:func:`publish`), and the models they hold rebuilt without a
  download (:func:`model_from_checkpoint`, :func:`load_models`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from segpipe.data import IMAGENET_MEAN, IMAGENET_STD
from segpipe.io import atomic_path
from segpipe.models import build_model

if TYPE_CHECKING:
    from segpipe.arrays import Batch
    from segpipe.augment import BatchAugment

# ----------------------------------------------------------------------------- device


def resolve_device(name: str, rank: int = 0) -> torch.device:
    """The device of config option ``device``: ``auto`` is CUDA where visible, else the CPU;
    on CUDA, GPU ``rank``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch -> model-ready images and long masks on the device, augmented there
    (per-sample seeds) when ``augment`` is given."""
    images, masks = batch.unpack(device)
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
    encoder's downsampling needs; whole images kept at their scale need it), the padded mask
    pixels ``ignore_index``; unchanged when they are already."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return images, masks
    images = F.pad(images, (0, pad_w, 0, pad_h))
    return images, F.pad(masks, (0, pad_w, 0, pad_h), value=ignore_index)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, then rename: a kill never leaves a truncated checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``; raises RuntimeError naming a file torch cannot read."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise RuntimeError(f"{path}: not a readable segpipe checkpoint ({exc})") from exc


def publish(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to ``src`` (a copy across file systems), atomically.

    Safe because checkpoints are only ever replaced by rename, never rewritten in place.
    """
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def model_from_config(cfg: dict[str, Any]) -> torch.nn.Module:
    """The model of a (checkpoint's) config, randomly initialised (no download)."""
    train = cfg["train"]
    return build_model(
        train["arch"],
        train["encoder"],
        len(cfg["classes"]),
        encoder_weights=None,
        decoder_dropout=train["decoder_dropout"],
        encoder_depth=train.get("encoder_depth", 5),
        decoder_channels=train.get("decoder_channels"),
    )


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model a checkpoint was trained with and load its weights (no download)."""
    model = model_from_config(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    return model


def load_models(
    checkpoints: Sequence[str | Path], device: torch.device, channels_last: bool
) -> tuple[list[torch.nn.Module], dict]:
    """The models of ``checkpoints`` in eval mode on ``device``, and the first one's config.
    Raises ValueError naming a checkpoint whose classes differ from the first one's."""
    models, first = [], None
    for path in checkpoints:
        ckpt = load_checkpoint(path)
        if first is None:
            first = ckpt["config"]
        elif ckpt["config"]["classes"] != first["classes"]:
            raise ValueError(
                f"{path}: classes {ckpt['config']['classes']} differ from {checkpoints[0]}'s "
                f"{first['classes']}; an ensemble averages models of the same classes"
            )
        model = model_from_checkpoint(ckpt).to(device).eval()
        models.append(model.to(memory_format=torch.channels_last) if channels_last else model)
    if first is None:
        raise ValueError("no checkpoint to predict with")
    return models, first
