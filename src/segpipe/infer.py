"""Predicting new images with a trained model: ``segpipe predict``.

Everything comes from the checkpoint (classes, architecture, training size); no config file is
read. With ``--onnx`` it all comes from an ONNX file that ``segpipe export`` wrote (its metadata),
run by onnxruntime without torch's model. Each input image, read by its content whatever its name
says (a ``.jpg`` that is a PNG, RGBA, greyscale, 16-bit), gets at its original size:

- ``masks/<name>.png``: class ids, uint8;
- ``overlays/<name>.jpg``: the classes' colours over the image;
- with ``probabilities``, ``probabilities/<name>.npz``: ``probabilities`` (C, H, W) uint8, the
  class probabilities times 255 rounded, and ``classes``.

A file that cannot be read as an image is skipped, logged and listed in ``summary.csv`` (file,
status, reason) with every other input; each output file appears atomically, so an interrupted
run leaves no half-written file.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

from segpipe.colors import overlay
from segpipe.export import ExportError, onnx_session, read_metadata
from segpipe.images import load_rgb
from segpipe.inference import Scorer, onnx_scorer, predict_images, torch_scorer, with_flips
from segpipe.io import atomic_path, write_csv
from segpipe.logs import UserError, progress
from segpipe.runtime import amp_dtype, load_models, resolve_device

logger = logging.getLogger(__name__)
UNREADABLE = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


class InferError(UserError, ValueError):
    """Inputs that segpipe predict cannot work with: no images, an output folder among them,
    a checkpoint of other classes."""


@dataclass(frozen=True)
class Model:
    """What predicting needs of a trained model: its scorer, classes and training size."""

    score: Scorer
    classes: list[str]
    image_size: int
    image_scale: float | None = None  # trained on images kept at this scale; None: squashed


def load_model(
    checkpoints: Sequence[str | Path], *, device: str = "auto", amp: str = "auto"
) -> Model:
    """The model of one checkpoint, or the mean of several (a fold ensemble), on the device
    training would pick. Raises InferError naming a file that is not a segpipe checkpoint."""
    dev = resolve_device(device)
    try:
        models, cfg = load_models(checkpoints, dev, channels_last=dev.type == "cuda")
    except RuntimeError as exc:
        raise InferError(str(exc)) from None
    score = torch_scorer(models, dev, autocast=amp_dtype(amp, dev))
    train = cfg["train"]
    scale = train["image_scale"] if train.get("resize") == "keep_aspect" else None
    return Model(score, list(cfg["classes"]), int(train["image_size"]), scale)


def load_onnx_model(path: str | Path, *, threads: int = 0) -> Model:
    """The model of an ONNX file that ``segpipe export`` wrote, run by onnxruntime on the CPU
    (``threads``: 0 for onnxruntime's default); classes and training size from its metadata.
    Raises InferError naming a file that is not such a model."""
    try:
        session = onnx_session(path, threads=threads)
        info = read_metadata(session, path)
    except ExportError as exc:
        raise InferError(str(exc)) from None
    return Model(onnx_scorer(session), info["classes"], info["image_size"], info["image_scale"])


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The files given and the files in the folders given (recursively, sorted; hidden files
    left out). Raises InferError for a missing input or when there is no file at all."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(
                p
                for p in item.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.parts[-1:])
            )
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise InferError(f"{item}: no such file or folder")
    if not files:
        raise InferError(f"no images in {', '.join(map(str, inputs))}: the folders are empty")
    return files


def output_names(files: Sequence[Path]) -> list[str]:
    """A name per file for its outputs: its stem, or its file name where two stems repeat."""
    stems = [f.stem for f in files]
    return [f.name if stems.count(f.stem) > 1 else f.stem for f in files]


def check_output_dir(out_dir: Path, inputs: Sequence[str | Path]) -> None:
    """Raise InferError when ``out_dir`` is an input folder or lies inside one (the outputs
    would become inputs of the next run)."""
    out = out_dir.resolve()
    for item in map(Path, inputs):
        folder = item.resolve() if item.is_dir() else item.resolve().parent
        if out == folder or (item.is_dir() and folder in out.parents):
            raise InferError(
                f"output folder {out_dir} is the input folder {item} or inside it; "
                "write the predictions elsewhere"
            )


def _save(path: Path, save) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=path.suffix) as tmp:
        save(tmp)


def write_prediction(
    out_dir: Path,
    name: str,
    rgb: np.ndarray,
    probabilities: torch.Tensor,
    classes: Sequence[str],
    *,
    keep_probabilities: bool = False,
    overlay_alpha: float = 0.5,
) -> Path:
    """Write one image's mask, overlay and (``keep_probabilities``) probabilities; returns the
    mask's path."""
    mask = probabilities.argmax(0).to(torch.uint8).numpy()
    mask_path = out_dir / "masks" / f"{name}.png"
    _save(mask_path, lambda tmp: Image.fromarray(mask, mode="L").save(tmp, format="PNG"))
    shaded = Image.fromarray(overlay(rgb, mask, len(classes), overlay_alpha))
    _save(
        out_dir / "overlays" / f"{name}.jpg",
        lambda tmp: shaded.save(tmp, format="JPEG", quality=90),
    )
    if keep_probabilities:
        compact = (probabilities.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        _save(
            out_dir / "probabilities" / f"{name}.npz",
            lambda tmp: np.savez_compressed(
                tmp, probabilities=compact, classes=np.array(list(classes))
            ),
        )
    return mask_path


def _read(file: Path) -> np.ndarray | str:
    """The image as uint8 RGB, or why it cannot be read."""
    try:
        return np.asarray(load_rgb(file))
    except UNREADABLE as exc:
        logger.warning("skipped %s: not a readable image (%s)", file, exc)
        return str(exc) or type(exc).__name__


def predict_files(
    model: Model,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    mode: str = "resize",
    tta: Sequence[str] = (),
    overlap: float = 0.5,
    batch_size: int = 8,
    probabilities: bool = False,
    overlay_alpha: float = 0.5,
    classes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Predict every image of ``inputs`` (files and folders) into ``out_dir`` with ``model``
    (:func:`load_model`), ``batch_size`` images (resize) or tiles (sliding) at a time:
    ``mode`` resize or sliding (:func:`segpipe.inference.predict_images`), averaged over the
    ``tta`` flips. ``classes``, when given, must be the model's. Returns the summary (file,
    status, output, reason), also written as ``out_dir/summary.csv``."""
    if classes is not None and list(classes) != model.classes:
        raise InferError(
            f"the checkpoint's classes {model.classes} differ from the config's {list(classes)}"
        )
    out = Path(out_dir)
    check_output_dir(out, inputs)
    files = find_images(inputs)
    predict = functools.partial(
        predict_images,
        score=with_flips(model.score, tta),
        mode=mode,
        size=model.image_size,
        overlap=overlap,
        batch_size=batch_size,
        scale=model.image_scale,
    )
    write = functools.partial(
        write_prediction,
        out,
        classes=model.classes,
        keep_probabilities=probabilities,
        overlay_alpha=overlay_alpha,
    )
    named = list(zip(files, output_names(files), strict=True))
    per_batch = batch_size if mode == "resize" else 1
    batches = [named[i : i + per_batch] for i in range(0, len(named), per_batch)]
    rows = []
    for batch in progress(batches, desc=f"predict ({per_batch} per batch)", logger=logger):
        rows += _predict_batch(batch, predict, write)
    return _write_summary(out, files, rows)


def _predict_batch(
    batch: Sequence[tuple[Path, str]],
    predict: Callable[[list[np.ndarray]], list[torch.Tensor]],
    write: Callable[[str, np.ndarray, torch.Tensor], Path],
) -> list[dict[str, str]]:
    """The summary rows of a batch of (file, output name): a file that is no readable image
    skipped, the others predicted together and written."""
    read = [(file, name, _read(file)) for file, name in batch]
    ok = [(file, name, rgb) for file, name, rgb in read if not isinstance(rgb, str)]
    rows = [
        {"file": str(file), "status": "skipped", "output": "", "reason": why}
        for file, _, why in read
        if isinstance(why, str)
    ]
    scores = predict([rgb for _, _, rgb in ok]) if ok else []
    for (file, name, rgb), p in zip(ok, scores, strict=True):
        mask = write(name, rgb, p)
        rows.append({"file": str(file), "status": "predicted", "output": str(mask), "reason": ""})
    return rows


def _write_summary(out: Path, files: Sequence[Path], rows: list[dict[str, str]]) -> pd.DataFrame:
    """``out/summary.csv``: the rows in the order of ``files``; logs what was predicted."""
    order = {str(file): i for i, file in enumerate(files)}
    summary = pd.DataFrame(rows, columns=["file", "status", "output", "reason"])
    summary = summary.sort_values("file", key=lambda c: c.map(order)).reset_index(drop=True)
    write_csv(out / "summary.csv", summary)
    skipped = int((summary["status"] == "skipped").sum())
    logger.info(
        "predicted %d of %d images into %s%s",
        len(summary) - skipped,
        len(summary),
        out,
        f"; skipped {skipped} (listed in {out / 'summary.csv'})" if skipped else "",
    )
    return summary
