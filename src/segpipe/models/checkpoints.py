"""Checkpoints: written atomically (:func:`save_checkpoint`), read (:func:`load_checkpoint`),
published as rule outputs (:func:`publish`), and the models they hold rebuilt without a download
(:func:`model_from_checkpoint`, :func:`load_models`)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from segpipe.io import atomic_path
from segpipe.models.build import build_model


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
    """Rebuild the model a checkpoint was trained with and load its weights (no download).

    The model is built on torch's ``meta`` device and takes the checkpoint's tensors as its
    own (``load_state_dict(assign=True)``): initialising weights at random only to overwrite
    them cost a prediction job a tenth of a second or more per model. A model that cannot be
    built that way (an encoder that computes with its weights while being built), or that
    keeps a tensor the checkpoint does not hold, is built and initialised as usual."""
    model = _model_without_init(ckpt)
    if model is None:
        model = model_from_config(ckpt["config"])
        model.load_state_dict(ckpt["model"])
    return model


def _model_without_init(ckpt: dict[str, Any]) -> torch.nn.Module | None:
    """The model of ``ckpt`` built on the meta device, its weights the checkpoint's; None
    where that leaves a tensor on the meta device or building there fails."""
    try:
        with torch.device("meta"):
            model = model_from_config(ckpt["config"])
    except Exception:  # an encoder that computes while being built: build it as usual
        return None
    model.load_state_dict(ckpt["model"], assign=True)
    tensors = [*model.parameters(), *model.buffers()]
    tensors += [v for m in model.modules() for v in vars(m).values() if isinstance(v, torch.Tensor)]
    return None if any(t.is_meta for t in tensors) else model


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
