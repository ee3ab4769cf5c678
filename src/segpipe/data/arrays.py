"""Preprocessed splits (:mod:`segpipe.data.preprocess`) read for training and prediction.

Loader workers read whole batches from the memory map (one fancy-indexing copy per batch, no
per-sample Python) and hand over one packed uint8 tensor per batch; augmentation and
normalisation run batched on the device (:mod:`segpipe.training.augment`). Memory does not grow with the
dataset beyond the pages of the map the OS keeps cached.

Sampling is deterministic per (seed, epoch, index): :class:`EpochSampler` yields (index, sample
seed) pairs, and each sample's augmentation is drawn from its own seed. The result does not
depend on the number of loader workers or the batch, and a run resumed in the middle of an epoch
sees exactly the samples and augmentations of an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from segpipe.data.preprocess import ArrayRows, load_array
from segpipe.processes import DieWithParent

logger = logging.getLogger(__name__)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A per-sample seed, stable across processes and runs."""
    return (seed * 1_000_003 + epoch * 100_003 + index) % (2**63 - 1)


class EpochSampler(Sampler):
    """Shuffled (index, sample seed) pairs for one epoch, sharded across data-parallel ranks.

    Every rank computes the same permutation from (seed, epoch) and takes every
    ``world_size``-th index from position ``rank``, so ranks see disjoint samples; the tail that
    does not divide evenly is dropped (``drop_tail``, for training) so all ranks take the same
    number of steps; validation keeps it, since ranks only meet to sum their results.
    ``skip(n)`` starts the current epoch after the first ``n`` samples of this rank (resume).
    """

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_tail: bool = True,
    ):
        self.n, self.seed, self.shuffle, self.drop_tail = n, seed, shuffle, drop_tail
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.start = epoch, skip

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        usable = len(order) - (len(order) % self.world_size if self.drop_tail else 0)
        return order[:usable][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in self.indices()[self.start :]:
            yield i, sample_seed(self.seed, self.epoch, i)

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.start)


class Batch(NamedTuple):
    """What the loader delivers: ``samples`` (B, S, S, 4) uint8, RGB + class-id mask packed as in
    the array (one tensor to share between processes, pin and copy to the device), and ``seeds``,
    one augmentation seed per sample (empty for plain indices)."""

    samples: torch.Tensor
    seeds: tuple[int, ...]

    def pin_memory(self) -> Batch:
        """Called by the DataLoader's pinning thread (pin_memory=True), for a fast copy to a GPU."""
        return Batch(self.samples.pin_memory(), self.seeds)

    def unpack(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images (B, 3, S, S) and masks (B, S, S) on ``device``."""
        samples = self.samples.to(device, non_blocking=True)
        return samples[..., :3].permute(0, 3, 1, 2), samples[..., 3]


def sample_extents(
    images: torch.Tensor, masks: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's own height and width (two (B,) long tensors) in a batch of uint8 images
    (B, 3, H, W) and masks (B, H, W) padded as :func:`segpipe.data.preprocess.preprocess_split`
    pads images kept at a scale: black pixels labelled ``ignore_index`` below and right of the
    image, up to the split's largest. Rows and columns of that kind at a sample's bottom and
    right edges count as padding; a sample made of nothing else is taken whole."""
    content = (images != 0).any(1) | (masks != ignore_index)
    return _extent(content.any(2)), _extent(content.any(1))


def _extent(present: torch.Tensor) -> torch.Tensor:
    """(B, N) bool -> (B,): one past the last True of each row (N for a row with none)."""
    n = present.shape[1]
    trailing = present.flip(1).to(torch.uint8).max(1).indices  # the first True from the end
    return torch.where(present.any(1), n - trailing, n)


def replicate_padding(images: torch.Tensor, masks: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """``images`` with each sample's padding (:func:`sample_extents`) filled with its bottom
    row and right column, replicated: what prediction puts around an image smaller than its
    window or its encoder's stride, so a model validated on padded samples sees what it is
    shown when it predicts. The masks keep ``ignore_index`` there."""
    heights, widths = sample_extents(images, masks, ignore_index)
    height, width = images.shape[-2:]
    if bool((heights == height).all() and (widths == width).all()):
        return images
    rows = torch.minimum(torch.arange(height, device=images.device), heights[:, None] - 1)
    cols = torch.minimum(torch.arange(width, device=images.device), widths[:, None] - 1)
    return take_windows(images, rows, cols)


def take_windows(tensors: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Sample i of ``tensors`` (B, ..., H, W) at the rows ``rows[i]`` and the columns
    ``cols[i]`` (index tensors (B, h) and (B, w)): (B, ..., h, w)."""
    return torch.stack([t[..., r, :][..., c] for t, r, c in zip(tensors, rows, cols, strict=True)])


def keep_batch(batch: Batch) -> Batch:
    """The collate function: :meth:`ArrayDataset.__getitems__` already built the batch."""
    return batch


class ArrayDataset(Dataset):
    """A preprocessed split, read a batch at a time.

    The loader asks for a list of items (``__getitems__``): plain indices, or (index, sample seed)
    pairs from :class:`EpochSampler`. One fancy-indexing read of the memory map copies those
    samples into one tensor; augmentation and normalisation happen later, on the device, for the
    whole batch (:func:`segpipe.models.device.prepare_batch`). Build the loader with :func:`batch_loader`.
    """

    def __init__(self, source: str | Path | ArrayRows, ignore_index: int = 255):
        self.source = source if isinstance(source, ArrayRows) else ArrayRows.whole(source)
        # Arrays of images kept at a scale differ in size: the smaller are padded, ignored.
        self.ignore_index = ignore_index
        self._arrays: list[np.ndarray] | None = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.source.rows)

    def __getitems__(self, items: list) -> Batch:
        pairs = [item if isinstance(item, tuple) else (item, None) for item in items]
        if self._arrays is None:
            self._arrays = [load_array(path) for path in self.source.paths]
        picked = [self.source.rows[i] for i, _ in pairs]
        if len(self._arrays) == 1:
            samples = np.asarray(self._arrays[0][[row for _, row in picked]])
        else:  # one fancy-indexing read per array, put back in the batch's order
            height = max(array.shape[1] for array in self._arrays)
            width = max(array.shape[2] for array in self._arrays)
            samples = np.zeros((len(picked), height, width, 4), np.uint8)
            samples[..., 3] = self.ignore_index
            for a, array in enumerate(self._arrays):
                at = [j for j, (b, _) in enumerate(picked) if b == a]
                if at:
                    h, w = array.shape[1:3]
                    samples[at, :h, :w] = array[[picked[j][1] for j in at]]
        seeds = tuple(s for _, s in pairs if s is not None)
        return Batch(torch.from_numpy(samples), seeds if len(seeds) == len(pairs) else ())

    def __getitem__(self, item) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample as uint8 image (3, S, S) and mask (S, S)."""
        images, masks = self.__getitems__([item]).unpack("cpu")
        return images[0], masks[0]


def batch_loader(
    dataset: ArrayDataset,
    *,
    batch_size: int,
    sampler: Sampler | None = None,
    workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """A DataLoader of :class:`Batch` es: workers read whole batches from the memory map, keep
    running between epochs and prefetch; batches are pinned for the copy to a GPU."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        # __getitems__ hands the collate function a Batch; torch types it as taking a list.
        collate_fn=keep_batch,  # type: ignore[arg-type]
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=generator,
        # A worker dies with the process that reads the batches, even one killed with SIGKILL.
        worker_init_fn=DieWithParent() if workers > 0 else None,
    )
