"""Applying trained models to whole images: class probabilities at each image's own size.

A *scorer* maps a batch of ImageNet-normalised images (B, 3, H, W, float32) to class
probabilities (B, C, H, W): one model's softmax, the mean of several (a fold ensemble,
:func:`torch_scorer`), or an ONNX session's. Around a scorer:

- :func:`with_tta` averages the probabilities over flipped copies of the batch (test-time
  augmentation: ``hflip``, ``vflip``, and with both also the image flipped both ways, as
  nnU-Net's mirroring does); :func:`with_and_without_tta` also keeps the probabilities without
  tta (the unflipped view's), from the same forward passes;
- :func:`predict_resized` scores an image resized to the training size (as preprocess resized
  the training images) and resizes the probabilities back;
- :func:`predict_sliding` scores tiles of the training size at the image's own scale, with
  ``overlap``, and blends them with a Gaussian weight that falls off towards the tile edges
  (``scipy.signal.windows.gaussian``, sigma = tile / 8, as nnU-Net): memory grows with the
  image only through its probabilities, never through the network's activations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segpipe.inference.choices import FLIPS, MODES
from segpipe.models.device import autocast as amp_context
from segpipe.models.device import normalize, pad_to_multiple
from segpipe.models.model_input import RESIZE, SLIDING, ModelInput

Scorer = Callable[[torch.Tensor], torch.Tensor]


def normalized(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> ImageNet-normalised float32 (1, 3, H, W), exactly as training
    normalises (:func:`segpipe.models.device.normalize`)."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None]
    return normalize(x, channels_last=False)


def torch_scorer(
    models: Sequence[torch.nn.Module],
    device: torch.device,
    *,
    autocast: torch.dtype | None = None,
    channels_last: bool = False,
) -> Scorer:
    """The mean of the ``models``' softmax probabilities, computed on ``device``; returned on
    the CPU as float32."""

    @torch.no_grad()
    def score(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with amp_context(device, autocast):
            probabilities = [model(x).float().softmax(1) for model in models]
        return torch.stack(probabilities).mean(0).cpu()

    return score


def onnx_scorer(session) -> Scorer:
    """The softmax probabilities of an onnxruntime ``session``'s logits (its first input and
    output, as ``segpipe export`` writes them), returned as float32 CPU tensors so flips,
    resizing and sliding windows work on it as on :func:`torch_scorer`."""
    name = session.get_inputs()[0].name
    output = session.get_outputs()[0].name

    def score(x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        logits = torch.from_numpy(session.run([output], {name: batch})[0])
        return logits.float().softmax(1)

    return score


def flip_views(tta: Sequence[str]) -> list[tuple[int, ...]]:
    """The tensor dimensions to reverse for each view of the ``tta`` flips: none (the image
    itself), each flip, and every combination of them."""
    unknown = sorted(set(tta) - set(FLIPS))
    if unknown:
        raise ValueError(f"unknown flips {unknown}; use {sorted(FLIPS)}")
    dims = [FLIPS[f] for f in dict.fromkeys(tta)]
    return [c for n in range(len(dims) + 1) for c in itertools.combinations(dims, n)]


def _flipped_back(
    score: Scorer, x: torch.Tensor, views: Sequence[tuple[int, ...]]
) -> Iterator[torch.Tensor]:
    """Each view's probabilities, flipped back to the image's orientation, in view order."""
    for dims in views:
        p = score(x.flip(dims) if dims else x)
        yield p.flip(dims) if dims else p


def _mean(scored: list[torch.Tensor]) -> torch.Tensor:
    total = scored[0]
    for p in scored[1:]:
        total = total + p
    return total / len(scored)


def with_tta(score: Scorer, tta: Sequence[str]) -> Scorer:
    """``score`` averaged over the flipped views of the batch (:func:`flip_views`) of the
    ``tta`` flips, each view's probabilities flipped back; ``score`` itself without flips."""
    views = flip_views(tta)
    if len(views) == 1:
        return score

    def averaged(x: torch.Tensor) -> torch.Tensor:
        return _mean(list(_flipped_back(score, x, views)))

    return averaged


def with_and_without_tta(score: Scorer, tta: Sequence[str]) -> Scorer:
    """The probabilities with the ``tta`` flips (:func:`with_tta`) and without them (the image
    alone), concatenated on the class axis (B, 2C, H, W): the image alone is the first view, so
    both come from one forward pass per view. Resizing and sliding windows treat the classes one
    by one, so the halves can be split at the end (:func:`split_scores`)."""
    views = flip_views(tta)

    def both(x: torch.Tensor) -> torch.Tensor:
        scored = list(_flipped_back(score, x, views))
        return torch.cat([_mean(scored), scored[0]], 1)

    return both


def split_scores(probabilities: torch.Tensor, count: int) -> list[torch.Tensor]:
    """(count x C, ...) -> ``count`` tensors of (C, ...): the halves of
    :func:`with_and_without_tta`'s scores (with tta, without), or the one of another scorer."""
    return list(probabilities.chunk(count, dim=0))


def predict_resized(images: Sequence[np.ndarray], score: Scorer, size: int) -> list[torch.Tensor]:
    """Probabilities (C, H, W) of each image (uint8 H x W x 3), scored in one batch at ``size``
    x ``size`` (PIL bilinear, as preprocess) and resized back to its own size (bilinear)."""
    small = [
        np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR))
        for rgb in images
    ]
    p = score(torch.cat([normalized(s) for s in small]))
    return [
        F.interpolate(one[None], size=rgb.shape[:2], mode="bilinear", align_corners=False)[0]
        for one, rgb in zip(p, images, strict=True)
    ]


def tile_weight(tile: int) -> torch.Tensor:
    """(tile, tile) blending weight: a 2-D Gaussian, sigma tile / 8, highest in the middle, its
    minimum raised to a thousandth of its peak so edge pixels still count."""
    import scipy.signal  # here: it costs every prediction job a second to import, sliding or not

    g = scipy.signal.windows.gaussian(tile, std=tile / 8)
    w = np.outer(g, g)
    return torch.from_numpy(np.maximum(w / w.max(), 1e-3)).float()


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis of ``length`` >= ``tile``: every ``stride``, the last tile
    flush with the end."""
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def _tiles(height: int, width: int, tile: int, stride: int) -> Iterator[tuple[int, int]]:
    for top in tile_starts(height, tile, stride):
        for left in tile_starts(width, tile, stride):
            yield top, left


def predict_sliding(
    rgb: np.ndarray, score: Scorer, tile: int, *, overlap: float = 0.5, batch_size: int = 8
) -> torch.Tensor:
    """Probabilities (C, H, W) of an image (uint8 H x W x 3) at its own scale, from overlapping
    ``tile`` x ``tile`` windows (``overlap``: the fraction of a tile shared with the next one)
    blended by :func:`tile_weight`. An image smaller than a tile is padded (reflected) and the
    result cropped back."""
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    height, width = rgb.shape[:2]
    x = normalized(rgb)
    pad_h, pad_w = max(0, tile - height), max(0, tile - width)
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    full_h, full_w = x.shape[2:]
    stride = max(1, int(round(tile * (1 - overlap))))
    weight = tile_weight(tile)
    total = weights = None
    positions = list(_tiles(full_h, full_w, tile, stride))
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        batch = torch.cat([x[:, :, t : t + tile, left : left + tile] for t, left in chunk])
        p = score(batch)
        if total is None or weights is None:
            total = torch.zeros(p.shape[1], full_h, full_w)
            weights = torch.zeros(full_h, full_w)
        for (t, left), one in zip(chunk, p, strict=True):
            total[:, t : t + tile, left : left + tile] += one * weight
            weights[t : t + tile, left : left + tile] += weight
    assert total is not None and weights is not None  # an image has at least one tile
    return (total / weights)[:, :height, :width]


def predict_at_scale(
    rgb: np.ndarray,
    score: Scorer,
    model_input: ModelInput,
    *,
    mode: str,
    overlap: float = 0.5,
    batch_size: int = 8,
) -> torch.Tensor:
    """Probabilities (C, H, W) of an image for a model trained on images kept at a scale
    (``train.resize: keep_aspect``): the image resized by the model's scale (PIL bilinear,
    aspect kept, as preprocess), scored whole (``resize``, padded to a multiple of 32 by
    :func:`segpipe.models.device.pad_to_multiple`) or in
    sliding windows of the model's size, and the probabilities resized back to the image's own
    size."""
    height, width = rgb.shape[:2]
    h, w = model_input.scaled_size(height, width)
    small = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
    if mode == SLIDING:
        p = predict_sliding(small, score, model_input.size, overlap=overlap, batch_size=batch_size)[
            None
        ]
    else:
        x, _ = pad_to_multiple(normalized(small), torch.zeros(1, h, w), 0)
        p = score(x)[:, :, :h, :w]
    return F.interpolate(p, size=(height, width), mode="bilinear", align_corners=False)[0]


def predict_images(
    images: Sequence[np.ndarray],
    score: Scorer,
    model_input: ModelInput,
    *,
    mode: str,
    overlap: float = 0.5,
    batch_size: int = 8,
) -> list[torch.Tensor]:
    """Probabilities (C, H, W) of each image by ``mode``: ``resize`` (:func:`predict_resized`,
    the images in one batch) or ``sliding`` (:func:`predict_sliding`, tiles of the model's
    size in batches of ``batch_size``); for a model trained at a scale,
    :func:`predict_at_scale`."""
    if mode not in MODES:
        raise ValueError(f"unknown prediction mode {mode!r}; use one of {list(MODES)}")
    if model_input.keeps_aspect:
        return [
            predict_at_scale(
                rgb, score, model_input, mode=mode, overlap=overlap, batch_size=batch_size
            )
            for rgb in images
        ]
    size = model_input.size
    if mode == RESIZE:
        return predict_resized(images, score, size)
    return [
        predict_sliding(rgb, score, size, overlap=overlap, batch_size=batch_size) for rgb in images
    ]
