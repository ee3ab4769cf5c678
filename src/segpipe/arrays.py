"""Preprocessed splits: every image decoded and resized once, stored as one memory-mapped array.

A split becomes one ``.npy`` file of shape (N, S, S, 4), uint8: RGB in channels 0-2 and the
class-id mask in channel 3, in the order of the split manifest. Training reads samples by index
from the memory map, so it never decodes a JPEG per step, and its memory does not grow with the
dataset beyond the pages of the map the OS keeps cached.

Sampling is deterministic per (seed, epoch, index): :class:`EpochSampler` yields (index, sample
seed) pairs, and :class:`ArrayDataset` seeds the augmentation of each sample from its own seed.
The result does not depend on the number of loader workers, and a run resumed in the middle of an
epoch sees exactly the samples and augmentations of an uninterrupted one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2

from segpipe.data import load_mask, load_rgb, read_manifest
from segpipe.io import atomic_path
from segpipe.logs import progress

logger = logging.getLogger(__name__)


def _decode(args: tuple[str, str | None, int]) -> np.ndarray:
    image_path, mask_path, size = args
    out = np.zeros((size, size, 4), dtype=np.uint8)
    out[..., :3] = np.asarray(load_rgb(image_path).resize((size, size), Image.BILINEAR))
    if mask_path:
        out[..., 3] = np.asarray(
            Image.fromarray(load_mask(mask_path)).resize((size, size), Image.NEAREST)
        )
    return out


def preprocess_split(
    manifest_csv: str | Path, out_path: str | Path, *, image_size: int, threads: int = 1
) -> Path:
    """Decode and resize every row of a split manifest into ``out_path`` (.npy), atomically."""
    manifest = read_manifest(manifest_csv)
    jobs = [(r["image"], r.get("mask") or None, image_size) for r in manifest.to_dict("records")]
    with atomic_path(out_path, suffix=".npy") as tmp:
        arr = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(jobs), image_size, image_size, 4)
        )
        with ProcessPoolExecutor(max_workers=max(1, threads)) as pool:
            chunks = pool.map(
                _decode, jobs, chunksize=max(1, min(64, len(jobs) // (4 * max(1, threads))))
            )
            for i, sample in enumerate(
                progress(
                    chunks,
                    desc=f"preprocess {Path(manifest_csv).stem}",
                    total=len(jobs),
                    logger=logger,
                )
            ):
                arr[i] = sample
        arr.flush()
        del arr
    logger.info("wrote %d samples at %d² to %s", len(jobs), image_size, out_path)
    return Path(out_path)


def load_array(path: str | Path) -> np.ndarray:
    """The (N, S, S, 4) uint8 array of a preprocessed split, memory-mapped read-only."""
    arr = np.load(path, mmap_mode="r")
    if arr.ndim != 4 or arr.shape[-1] != 4 or arr.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected a (N, S, S, 4) uint8 array, got {arr.shape} {arr.dtype}"
        )
    return arr


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


class ArrayDataset(Dataset):
    """Samples of a preprocessed split as uint8 (3, S, S) image and (S, S) mask tensors.

    Items are addressed by (index, sample seed) from :class:`EpochSampler`; a plain int index
    works too (no augmentation seed needed). Normalisation happens on the device, in batches.
    """

    def __init__(self, path: str | Path, *, augment: v2.Transform | None = None):
        self.path = str(path)
        self.augment = augment
        self.length = len(load_array(path))
        self._array: np.ndarray | None = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        if self._array is None:
            self._array = load_array(self.path)
        sample = torch.from_numpy(np.array(self._array[index]))
        image = tv_tensors.Image(sample[..., :3].permute(2, 0, 1))
        mask = tv_tensors.Mask(sample[..., 3])
        if self.augment is not None and seed is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image, mask = self.augment(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
