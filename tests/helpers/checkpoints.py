"""A checkpoint of an untrained tiny model, for tests that need one and no training."""

from __future__ import annotations

from pathlib import Path

import torch

from segpipe.models.build import build_model

from helpers.repo import TINY_MODEL


def untrained_checkpoint(path: Path, classes: list[str]) -> Path:
    """A checkpoint of a random-weight mini UNet, as predict reads it (no training needed)."""
    train = {**TINY_MODEL, "decoder_dropout": 0.0, "image_size": 32}  # as train records it
    torch.manual_seed(0)
    model = build_model(
        "Unet",
        train["encoder"],
        len(classes),
        encoder_depth=train["encoder_depth"],
        decoder_channels=train["decoder_channels"],
    )
    torch.save({"config": {"classes": classes, "train": train}, "model": model.state_dict()}, path)
    return path
