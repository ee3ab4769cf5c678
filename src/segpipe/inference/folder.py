"""Predicting folders of new images with a trained model: ``segpipe predict`` and rule
``infer`` (:func:`predict_folder`).

Everything comes from the checkpoint (classes, architecture, training size); no config file is
read. With ``--onnx`` it all comes from an ONNX file that ``segpipe export`` wrote (its metadata),
run by onnxruntime without torch's model. Each input image, read by its content whatever its name
says (a ``.jpg`` that is a PNG, RGBA, greyscale, 16-bit), gets at its original size (the layout
of :mod:`segpipe.data.predictions`, written by :mod:`segpipe.inference.writer`):

- ``masks/<name>.png``: class ids, uint8;
- ``overlays/<name>.jpg``: the classes' colours over the image (not with ``--no-overlays``);
- with ``probabilities``, ``probabilities/<name>.npz``: ``probabilities`` (C, H, W) uint8, the
  class probabilities times 255 rounded, and ``classes``.

``<name>`` is the file's path below the folder given, without its suffix (``a/x.png`` ->
``masks/a/x.png``, ``x.jpg`` -> ``masks/x.png``); with several inputs, below the folder that
holds them all. A file given twice is predicted once. Two inputs whose names would be the same
(``x.jpg`` and ``x.png``, or names that differ only in case or Unicode normalisation, which one
file on macOS or Windows) are refused before anything is predicted, naming both.

A file that cannot be read as an image (an empty file, a truncated image, a file that is no
image whatever its suffix) is skipped, logged and listed in ``summary.csv`` (file, status,
output relative to the output folder, reason) with every other input. So is everything in a
folder given that is not searched: a hidden file or folder (a name that starts with ``.``; a
hidden file given by name is predicted), a link to a folder, a broken link, a FIFO or socket.

The output folder is written as a whole: it appears once complete (an interrupted run, a full
disk leave none, and the previous one as it was), with :data:`segpipe.outputs.MANIFEST` listing
its files. It must not be, hold or lie inside an input folder, nor be or hold the model's file
(:mod:`segpipe.outputs`); one that already holds files is refused unless ``overwrite``, which
replaces it only when segpipe predict wrote it and it holds nothing else.
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

from segpipe.data import predictions
from segpipe.data.image_files import (  # noqa: F401  (segpipe predict's errors and files)
    InferError,
    OutputClashError,
    find_images,
    find_inputs,
    walk_inputs,
)
from segpipe.data.images import ImageTooLargeError, load_rgb
from segpipe.inference.engine import Scorer, onnx_scorer, predict_images, torch_scorer, with_tta
from segpipe.inference.onnx import ExportError, onnx_session, read_metadata, stale_reason
from segpipe.inference.writer import write_prediction
from segpipe.io import atomic_dir, write_csv
from segpipe.logs import progress
from segpipe.models.checkpoints import load_models
from segpipe.models.device import amp_dtype, resolve_device
from segpipe.models.model_input import ModelInput
from segpipe.outputs import OutputError, Read, check_folder, write_manifest

logger = logging.getLogger(__name__)
WRITER = "segpipe predict"  # the writer its output folders' manifest names
UNREADABLE = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
    ImageTooLargeError,
)


@dataclass(frozen=True)
class Predictor:
    """What predicting needs of a trained model: its scorer, classes and input geometry."""

    score: Scorer
    classes: list[str]
    input: ModelInput
    files: tuple[Path, ...] = ()  # the checkpoints or ONNX file it was read from


def load_model(
    checkpoints: Sequence[str | Path], *, device: str = "auto", amp: str = "auto"
) -> Predictor:
    """The model of one checkpoint, or the mean of several (a fold ensemble), on the device
    training would pick. Raises InferError naming a file that is not a segpipe checkpoint."""
    dev = resolve_device(device)
    try:
        models, cfg = load_models(checkpoints, dev, channels_last=dev.type == "cuda")
    except RuntimeError as exc:
        raise InferError(str(exc)) from None
    score = torch_scorer(models, dev, autocast=amp_dtype(amp, dev))
    files = tuple(map(Path, checkpoints))
    return Predictor(score, list(cfg["classes"]), ModelInput.from_train(cfg["train"]), files)


def load_onnx_model(path: str | Path, *, threads: int = 0, allow_stale: bool = False) -> Predictor:
    """The model of an ONNX file that ``segpipe export`` wrote, run by onnxruntime on the CPU
    (``threads``: 0 for onnxruntime's default); classes and training size from its metadata.
    Raises InferError naming a file that is not such a model, or (unless ``allow_stale``) one
    whose checkpoint changed since the export (:func:`segpipe.inference.onnx.stale_reason`); warns
    when the file records no checkpoint digest."""
    try:
        session = onnx_session(path, threads=threads)
        info = read_metadata(session, path)
    except ExportError as exc:
        raise InferError(str(exc)) from None
    if not info.get("checkpoint_sha256"):
        logger.warning(
            "%s records no checkpoint digest (exported by an older segpipe): whether it is "
            "the model of the best.pt beside it is not checked; re-export to record it",
            path,
        )
    elif (reason := stale_reason(path, info)) is not None:
        if not allow_stale:
            raise InferError(reason)
        logger.warning("%s", reason.split(": re-export")[0] + " (--allow-stale-onnx)")
    return Predictor(onnx_scorer(session), info["classes"], info["input"], (Path(path),))


def check_output_dir(
    out_dir: Path,
    inputs: Sequence[str | Path],
    *,
    overwrite: bool = False,
    model_files: Sequence[Path] = (),
) -> Path:
    """The real folder to write ``out_dir`` at: raises InferError when it is, holds or lies
    inside an input folder (the outputs would become inputs of the next run), is the folder of
    an input file, is or holds a model file, is a file, cannot be created, or holds files
    without ``overwrite``, or files that segpipe predict did not write
    (:func:`segpipe.outputs.check_folder`)."""
    reads = [Read(Path(f), "the model file") for f in model_files]
    for item in map(Path, inputs):
        if item.is_dir():
            reads.append(Read(item, "the input folder"))
        else:
            reads += [Read(item.parent, "the input folder", True), Read(item, "the input file")]
    try:
        return check_folder(
            out_dir, "output folder", writer=WRITER, reads=reads, overwrite=overwrite
        )
    except OutputError as exc:
        raise InferError(str(exc)) from None


def unreadable_reason(file: Path, exc: BaseException) -> str:
    """Why ``file`` is no readable image, in words: empty, no image, truncated or damaged."""
    try:
        if file.stat().st_size == 0:
            return "empty file"
    except OSError:
        pass
    detail = str(exc).strip() or type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        return "not an image (no image format recognised in its content)"
    if "truncated" in detail or isinstance(exc, SyntaxError | EOFError):
        return f"truncated or damaged image ({detail})"
    if isinstance(exc, ImageTooLargeError):
        (width, height), limit = exc.size, exc.limit
        return f"too large to read: {width}x{height} pixels, more than {limit:,} (not decoded)"
    if isinstance(exc, Image.DecompressionBombError):
        return f"too large to read ({detail})"
    return f"not a readable image ({detail})"


def _read(file: Path) -> np.ndarray | str:
    """The image as uint8 RGB, or why it cannot be read."""
    try:
        return np.asarray(load_rgb(file))
    except UNREADABLE as exc:
        reason = unreadable_reason(file, exc)
        logger.warning("skipped %s: %s", file, reason)
        return reason


def predict_files(
    model: Predictor,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    mode: str = "resize",
    tta: Sequence[str] = (),
    overlap: float = 0.5,
    batch_size: int = 8,
    probabilities: bool = False,
    with_overlays: bool = True,
    overlay_alpha: float = 0.5,
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Predict every image of ``inputs`` (files and folders) into ``out_dir`` with ``model``
    (:func:`load_model`), ``batch_size`` images (resize) or tiles (sliding) at a time:
    ``mode`` resize or sliding (:func:`segpipe.inference.engine.predict_images`), averaged over the
    ``tta`` flips; the overlays only ``with_overlays``. ``classes``, when given, must be the
    model's. ``out_dir`` appears when
    complete; one that holds files is replaced with ``overwrite``, else refused
    (:func:`check_output_dir`). Returns the summary (file, status, output, reason), also
    written as ``out_dir/summary.csv``."""
    if classes is not None and list(classes) != model.classes:
        raise InferError(
            f"the checkpoint's classes {model.classes} differ from the config's {list(classes)}"
        )
    out = Path(out_dir)
    check = functools.partial(
        check_output_dir, out, inputs, overwrite=overwrite, model_files=model.files
    )
    real = check()
    named, left_out = walk_inputs(inputs)
    predict = functools.partial(
        predict_images,
        score=with_tta(model.score, tta),
        model_input=model.input,
        mode=mode,
        overlap=overlap,
        batch_size=batch_size,
    )
    per_batch = batch_size if mode == "resize" else 1
    batches = [named[i : i + per_batch] for i in range(0, len(named), per_batch)]
    with atomic_dir(real, check=check) as tmp:  # checked again: files may have come

        def write(name: str, rgb: np.ndarray, p: torch.Tensor) -> Path:
            return write_prediction(
                tmp,
                name,
                rgb if with_overlays else None,
                p,
                model.classes,
                keep_probabilities=probabilities,
                overlay_alpha=overlay_alpha,
            )

        rows = [_left_out_row(path, reason) for path, reason in left_out]
        for batch in progress(batches, desc=f"predict ({per_batch} per batch)", logger=logger):
            rows += _predict_batch(batch, predict, write)
        files = [file for file, _ in named] + [path for path, _ in left_out]
        summary = _write_summary(tmp, files, rows)
        write_manifest(tmp, WRITER)
    _log_summary(summary, out)
    return summary


def predict_folder(
    checkpoints: Sequence[str | Path],
    folder: str | Path,
    out_dir: str | Path,
    *,
    classes: Sequence[str],
    threads: int = 1,
    device: str = "auto",
    amp: str = "auto",
    tta: Sequence[str] = (),
    batch_size: int = 8,
    with_overlays: bool = True,
    overlay_alpha: float = 0.5,
) -> pd.DataFrame:
    """Predict every image of ``folder`` with the mean of ``checkpoints`` as ``segpipe predict``
    does (:func:`predict_files`, each image resized to the training size and its probabilities
    back, averaged over the ``tta`` flips): ``masks/``, ``overlays/`` (``with_overlays``:
    :func:`segpipe.data.predictions.folder_overlays`) and ``summary.csv``
    (files that are no readable image skipped) in ``out_dir``, which appears when complete,
    replacing any earlier one (rule ``infer``). Raises :class:`InferError` when the
    checkpoints' classes are not ``classes`` or two files of ``folder`` would be predicted into
    one mask (:func:`find_inputs`)."""
    torch.set_num_threads(threads)
    model = load_model(list(checkpoints), device=device, amp=amp)
    return predict_files(
        model,
        [folder],
        out_dir,
        mode="resize",
        tta=tta,
        batch_size=batch_size,
        with_overlays=with_overlays,
        overlay_alpha=overlay_alpha,
        classes=classes,
        overwrite=True,  # the rule's output folder: Snakemake's to replace
    )


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
        write(name, rgb, p)
        output = predictions.mask_name(name)
        rows.append({"file": str(file), "status": "predicted", "output": output, "reason": ""})
    return rows


def _left_out_row(path: Path, reason: str) -> dict[str, str]:
    logger.warning("skipped %s: %s", path, reason)
    return {"file": str(path), "status": "skipped", "output": "", "reason": reason}


def _write_summary(out: Path, files: Sequence[Path], rows: list[dict[str, str]]) -> pd.DataFrame:
    """``out/summary.csv``: the rows in the order of ``files``."""
    order = {str(file): i for i, file in enumerate(files)}
    summary = pd.DataFrame(rows, columns=["file", "status", "output", "reason"])
    summary = summary.sort_values("file", key=lambda c: c.map(order)).reset_index(drop=True)
    write_csv(predictions.summary_path(out), summary)
    return summary


def _log_summary(summary: pd.DataFrame, out: Path) -> None:
    skipped = int((summary["status"] == "skipped").sum())
    logger.info(
        "predicted %d of %d images into %s%s",
        len(summary) - skipped,
        len(summary),
        out,
        f"; skipped {skipped} (listed in {predictions.summary_path(out)})" if skipped else "",
    )
