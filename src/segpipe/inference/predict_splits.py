"""Predicting whole splits: every image of a split's manifest, read from its preprocessed
arrays, into class-id PNG masks at each image's original size, with colour overlays when asked
(:func:`predict_split`); every split a model is scored on, with and without flips, in one go
(:func:`predict_model`, rule ``predict``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from segpipe.data import predictions
from segpipe.data.arrays import ArrayDataset, Batch, batch_loader
from segpipe.data.images import load_rgb
from segpipe.data.preprocess import ArrayRows, select_rows
from segpipe.data.split import read_manifest
from segpipe.inference.engine import (
    Scorer,
    flip_views,
    normalized,
    predict_sliding,
    split_scores,
    torch_scorer,
    with_and_without_tta,
    with_tta,
)
from segpipe.inference.writer import write_prediction
from segpipe.io import atomic_dir
from segpipe.logs import progress
from segpipe.models.checkpoints import load_models
from segpipe.models.device import amp_dtype, pad_to_multiple, prepare_batch, resolve_device
from segpipe.models.model_input import SLIDING, ModelInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictOptions:
    """How a model predicts: the config's predict section as rule predict passes it
    (:func:`segpipe.workflow.jobs.prediction`), and the job's ``threads``. With ``tta`` flips
    the class probabilities are the mean over the flipped views; images kept at a scale are
    scored whole (``mode`` resize) or in sliding windows of the training size (``mode``
    sliding, ``overlap``); ``with_overlays`` writes each image's colour overlay of
    ``overlay_alpha`` beside its mask."""

    batch_size: int = 8
    threads: int = 1
    device: str = "auto"
    amp: str = "auto"
    with_overlays: bool = True
    overlay_alpha: float = 0.5
    tta: Sequence[str] = ()
    mode: str = "resize"
    overlap: float = 0.5

    @property
    def alpha(self) -> float | None:
        """The overlays' alpha; None: masks only."""
        return self.overlay_alpha if self.with_overlays else None


@torch.no_grad()
def predict_model(
    checkpoints: Sequence[str | Path],
    manifests: Mapping[str, str | Path],
    arrays: Sequence[str | Path],
    array_manifests: Sequence[str | Path],
    out_dir: str | Path,
    options: PredictOptions = PredictOptions(),
) -> None:
    """Predict every split of ``manifests`` (split -> manifest) with one model (rule predict):
    ``out_dir/<split>/`` as :func:`predict_split` writes it and, with ``options.tta`` flips, also
    ``out_dir/no_tta/<split>/`` without them (:func:`segpipe.data.predictions.split_dir`),
    from the same forward passes (the image unflipped is one of the views). The checkpoints are
    loaded once; each split's images are the rows of ``arrays`` (written from
    ``array_manifests``) that its manifest lists. ``out_dir`` appears atomically when every
    split is written. Without ``options.with_overlays`` only the masks are written (rule
    predict, unless predict.overlays is ``all``: :func:`segpipe.data.predictions.split_overlays`)."""
    scoring, classes = _scoring(checkpoints, options)
    with atomic_dir(out_dir) as tmp:
        for split, manifest in manifests.items():
            folders = [predictions.split_dir(tmp, split)]
            if options.tta:
                folders.append(predictions.split_dir(tmp, split, tta=False))
            data = select_rows(manifest, arrays, array_manifests)
            _predict_rows(scoring, classes, manifest, data, folders, options)
    logger.info("wrote the predictions of %s to %s", ", ".join(manifests), out_dir)


@torch.no_grad()
def predict_split(
    checkpoints: str | Path | Sequence[str | Path],
    manifest_csv: str | Path,
    data: str | Path | ArrayRows,
    out_dir: str | Path,
    options: PredictOptions = PredictOptions(),
) -> None:
    """Predict every image of a split into ``out_dir/masks/<id>.png`` (uint8 class ids, original
    size) and, with overlays, ``out_dir/overlays/<id>.jpg``; ``out_dir`` appears atomically
    when complete.

    Inputs come from the split's preprocessed array, or the rows of arrays that hold its images
    (``data``; the same data path as training). The class probabilities are the mean over
    several ``checkpoints`` (a fold ensemble) and over the ``options.tta`` flips
    (:mod:`segpipe.inference.engine`), resized back to each image's own size (bilinear) before the
    argmax. Images kept at a scale (``train.resize: keep_aspect`` in the checkpoint) are
    scored whole or in sliding windows of the training size, each cut out of its padded
    sample first (:class:`PredictOptions`).
    """
    if isinstance(checkpoints, str | Path):
        checkpoints = [checkpoints]
    scoring, classes = _scoring(checkpoints, options, no_tta=False)
    with atomic_dir(out_dir) as tmp:
        _predict_rows(scoring, classes, manifest_csv, data, [tmp], options)
    logger.info("wrote the predictions of %s to %s", manifest_csv, out_dir)


def _scoring(
    checkpoints: Sequence[str | Path], options: PredictOptions, *, no_tta: bool = True
) -> tuple[SplitScoring, list[str]]:
    """How the checkpoints' models score a split: averaged over the ``tta`` flips and, with
    ``no_tta`` and flips, also without them (:func:`with_and_without_tta`); and their classes."""
    torch.set_num_threads(options.threads)
    dev = resolve_device(options.device)
    models, cfg = load_models(checkpoints, dev, channels_last=dev.type == "cuda")
    score = torch_scorer(models, dev, autocast=amp_dtype(options.amp, dev))
    tta = options.tta
    if len(models) > 1 or tta:
        logger.info(
            "mean class probabilities of %d model(s) x %d view(s)%s",
            len(models),
            len(flip_views(tta)),
            ", and without tta" if no_tta and tta else "",
        )
    scorer = with_and_without_tta(score, tta) if no_tta and tta else with_tta(score, tta)
    model_input = ModelInput.from_train(cfg["train"])
    if (problem := model_input.split_mode_problem(options.mode)) is not None:
        raise ValueError(f"{checkpoints[0]}: {problem}")
    scoring = SplitScoring(scorer, model_input, options.mode, options.overlap, dev)
    return scoring, list(cfg["classes"])


def _predict_rows(
    scoring: SplitScoring,
    classes: list[str],
    manifest_csv: str | Path,
    data: str | Path | ArrayRows,
    folders: list[Path],
    options: PredictOptions,
) -> None:
    """Write the predictions of a manifest's rows: one of the scores (with tta, without) per
    folder, with overlays where ``options`` asks for them."""
    batch_size, overlay_alpha = options.batch_size, options.alpha
    rows = read_manifest(manifest_csv).to_dict("records")
    threads = torch.get_num_threads()
    loader = _split_loader(data, len(rows), manifest_csv, batch_size, threads, scoring.device)
    parts = [predictions.MASKS] + ([predictions.OVERLAYS] if overlay_alpha is not None else [])
    for folder in folders:
        for part in parts:  # there for an empty split too
            (folder / part).mkdir(parents=True)
    start = 0
    for batch in progress(loader, desc=f"predict {Path(manifest_csv).stem}", logger=logger):
        batch_rows = rows[start : start + len(batch.samples)]
        for one, row in zip(scoring.scores(batch, batch_rows), batch_rows, strict=True):
            full = _at_image_size(one, row)
            for folder, scores in zip(folders, split_scores(full, len(folders)), strict=True):
                _write_row(folder, row, scores, classes, overlay_alpha)
        start += len(batch.samples)
    logger.info("predicted %d images of %s", len(rows), manifest_csv)


def _split_loader(
    data: str | Path | ArrayRows,
    count: int,
    manifest_csv: str | Path,
    batch_size: int,
    threads: int,
    device: torch.device,
) -> DataLoader:
    """The batches of a split's array(s), in manifest order; raises ValueError where they hold
    other than the manifest's ``count`` samples."""
    dataset = ArrayDataset(data)
    if len(dataset) != count:
        raise ValueError(f"{data} holds {len(dataset)} samples but {manifest_csv} lists {count}")
    return batch_loader(
        dataset,
        batch_size=batch_size,
        workers=min(4, max(0, threads - 1)),
        pin_memory=device.type == "cuda",
    )


@dataclass(frozen=True)
class SplitScoring:
    """How the images of a split's loader batches are scored: ``score`` (probabilities of
    normalised images), the model's input geometry, and ``mode`` with ``overlap``."""

    score: Scorer
    input: ModelInput
    mode: str
    overlap: float
    device: torch.device

    def scores(self, batch: Batch, rows: list[dict[str, Any]]) -> Iterable[torch.Tensor]:
        """The probabilities of a loader batch's images: the batch whole (squashed images), or
        per image its region at scale of the padded sample, whole or in sliding windows."""
        if not self.input.keeps_aspect:
            channels_last = self.device.type == "cuda"
            return self.score(prepare_batch(batch, self.device, channels_last)[0])
        images, _ = batch.unpack("cpu")
        out = []
        for image, row in zip(images, rows, strict=True):
            height, width = self.input.scaled_size(int(row["height"]), int(row["width"]))
            rgb = image[:, :height, :width].permute(1, 2, 0).numpy()
            if self.mode == SLIDING:
                out.append(predict_sliding(rgb, self.score, self.input.size, overlap=self.overlap))
            else:
                x, _ = pad_to_multiple(normalized(rgb), torch.zeros(1, height, width), 0)
                out.append(self.score(x)[0, :, :height, :width])
        return out


def _at_image_size(probabilities: torch.Tensor, row: dict[str, Any]) -> torch.Tensor:
    """Probabilities resized back to the manifest row's image size (bilinear)."""
    size = (int(row["height"]), int(row["width"]))
    return F.interpolate(probabilities[None], size=size, mode="bilinear", align_corners=False)[0]


def _write_row(
    out_dir: Path,
    row: dict[str, Any],
    probabilities: torch.Tensor,
    classes: Sequence[str],
    alpha: float | None,
) -> None:
    """The prediction of one manifest row (:func:`segpipe.inference.writer.write_prediction`,
    named by its id) from its probabilities at the image's own size; its image is read (for the
    overlay) only with an overlay ``alpha``."""
    name = str(row["id"])
    if alpha is None:
        write_prediction(out_dir, name, None, probabilities, classes)
        return
    rgb = np.asarray(load_rgb(row["image"], None))  # checked by remap
    write_prediction(out_dir, name, rgb, probabilities, classes, overlay_alpha=alpha)
