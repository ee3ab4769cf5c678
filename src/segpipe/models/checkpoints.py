"""Checkpoints: written atomically (:func:`save_checkpoint`), read (:func:`load_checkpoint`),
published as rule outputs (:func:`publish`), and the models they hold rebuilt without a download
(:func:`model_from_checkpoint`, :func:`load_models`).

Each folder that checkpoints are saved in holds their digests, :data:`LEDGER`: a checkpoint that
changed since segpipe wrote it (a file copied over a published hard link of it, which writes
through to this name) is told by :func:`changed_since_saved`, so that training never resumes
from a model it did not train.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from segpipe.io import (
    RecordingWriter,
    atomic_copy,
    atomic_path,
    copy_file,
    file_sha256,
    write_json,
)
from segpipe.models.build import build_model

LEDGER = "checkpoints.json"
"""In a folder of saved checkpoints: file name -> the sha256 of the last two versions saved."""


class _HashingWriter(RecordingWriter):
    """A file that keeps the sha256 of what is written through it (torch.save writes a
    checkpoint from start to end, without seeking)."""

    def __init__(self, file: Any):
        super().__init__(file)
        self.sha256 = hashlib.sha256()

    def write(self, data: Any) -> int:
        written = super().write(data)
        self.sha256.update(memoryview(data).cast("B")[:written])
        return written


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> str:
    """torch.save to a temp file, then rename: a kill never leaves a truncated checkpoint, and a
    full or read-only disk ends in one :class:`segpipe.io.WriteError` naming ``path`` (torch
    alone says ``unexpected pos``). The digest goes to the folder's :data:`LEDGER`; returns it."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb", buffering=0) as raw:
        writer = _HashingWriter(raw)
        try:
            torch.save(state, writer)  # type: ignore[arg-type]  # a binary file, as IO[bytes]
        except RuntimeError:
            if writer.error is not None:
                raise writer.error from None
            raise
        digest = writer.sha256.hexdigest()
        # Recorded before the rename: a kill between the two leaves the old file, which the
        # ledger still lists.
        _record(path, digest)
    return digest


def copy_checkpoint(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source`` to ``target`` atomically and record it in the target folder's ledger."""
    target = Path(target)
    with atomic_copy(source, target) as tmp:
        _record(target, file_sha256(tmp))


def _ledger(folder: Path) -> dict[str, list[str]]:
    try:
        ledger = json.loads((folder / LEDGER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return ledger if isinstance(ledger, dict) else {}


def _record(path: Path, digest: str) -> None:
    ledger = _ledger(path.parent)
    earlier = [d for d in ledger.get(path.name, []) if isinstance(d, str)][-1:]
    write_json(path.parent / LEDGER, {**ledger, path.name: [*earlier, digest]})


def changed_since_saved(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` is not one that :func:`save_checkpoint` wrote there (its
    sha256 is none its folder's ledger lists), or None; None too where no ledger lists it (a
    folder saved by an older segpipe)."""
    path = Path(path)
    known = _ledger(path.parent).get(path.name)
    if not known or not path.is_file() or file_sha256(path) in known:
        return None
    return (
        f"{path} changed since training wrote it (its sha256 is not the one recorded in "
        f"{path.parent / LEDGER}; a file copied over a published checkpoint writes through "
        "its hard link)"
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``; raises RuntimeError naming a file torch cannot read, in one
    line (torch's own reasons can span several)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise RuntimeError(f"{path}: not a readable segpipe checkpoint ({reason})") from exc


def publish(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to ``src`` (a copy across file systems), atomically.

    Safe for segpipe, which replaces checkpoints only by rename, never in place. A file copied
    over ``dst`` by hand (``cp``, which writes in place) changes ``src`` too: training tells it
    by :func:`changed_since_saved` before resuming from ``src``.
    """
    copy_file(src, dst, link=True)


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
