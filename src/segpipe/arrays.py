"""Preprocessed splits: every image decoded and resized once, stored as one memory-mapped array.

A split becomes one ``.npy`` file of shape (N, H, W, 4), uint8: RGB in channels 0-2 and the
class-id mask in channel 3, in the order of the split manifest; H = W = ``train.image_size``
when the images are squashed to it, else the largest image at ``train.image_scale``. Training reads samples by index
from the memory map, so it never decodes a JPEG per step, and its memory does not grow with the
dataset beyond the pages of the map the OS keeps cached.

Loader workers read whole batches (one fancy-indexing copy per batch, no per-sample Python) and
hand over one packed uint8 tensor per batch; augmentation and normalisation run batched on the
device (:mod:`segpipe.augment`).

Sampling is deterministic per (seed, epoch, index): :class:`EpochSampler` yields (index, sample
seed) pairs, and each sample's augmentation is drawn from its own seed. The result does not
depend on the number of loader workers or the batch, and a run resumed in the middle of an epoch
sees exactly the samples and augmentations of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from segpipe.data import load_mask, load_rgb, read_manifest
from segpipe.io import atomic_path
from segpipe.logs import progress

logger = logging.getLogger(__name__)


def _decode(args: tuple[str, str | None, tuple[int, int]]) -> np.ndarray:
    """One sample resized to (height, width): RGB bilinear, mask nearest."""
    image_path, mask_path, (height, width) = args
    out = np.zeros((height, width, 4), dtype=np.uint8)
    out[..., :3] = np.asarray(load_rgb(image_path).resize((width, height), Image.BILINEAR))
    if mask_path:
        out[..., 3] = np.asarray(
            Image.fromarray(load_mask(mask_path)).resize((width, height), Image.NEAREST)
        )
    return out


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """An image's size at ``scale``, aspect ratio kept (at least 1 x 1)."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def preprocess_split(
    manifest_csv: str | Path,
    out_path: str | Path,
    *,
    image_size: int,
    threads: int = 1,
    scale: float | None = None,
    ignore_index: int = 255,
) -> Path:
    """Decode and resize every row of a split manifest into ``out_path`` (.npy), atomically.

    Without ``scale`` every image becomes ``image_size`` x ``image_size`` (its aspect ratio
    squashed). With ``scale`` every image keeps its aspect ratio at ``scale`` times its size
    (:func:`scaled_size`), top-left in an array as large as the largest; the rest of each
    sample is black with ``ignore_index`` as its mask.
    """
    manifest = read_manifest(manifest_csv)
    records = manifest.to_dict("records")
    if scale is None:
        sizes = [(image_size, image_size)] * len(records)
    else:
        sizes = [scaled_size(int(r["height"]), int(r["width"]), scale) for r in records]
    shape = (max(h for h, _ in sizes), max(w for _, w in sizes)) if sizes else (image_size,) * 2
    jobs = [
        (r["image"], r.get("mask") or None, size) for r, size in zip(records, sizes, strict=True)
    ]
    with atomic_path(out_path, suffix=".npy") as tmp:
        arr = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(jobs), *shape, 4)
        )
        if scale is not None:
            arr[..., 3] = ignore_index
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
                arr[i, : sample.shape[0], : sample.shape[1]] = sample
        arr.flush()
        del arr
    how = f"at scale {scale}, aspect kept" if scale is not None else f"at {image_size}²"
    logger.info("wrote %d samples %s (%d x %d) to %s", len(jobs), how, *shape, out_path)
    return Path(out_path)


def load_array(path: str | Path) -> np.ndarray:
    """The (N, H, W, 4) uint8 array of a preprocessed split, memory-mapped read-only."""
    arr = np.load(path, mmap_mode="r")
    if arr.ndim != 4 or arr.shape[-1] != 4 or arr.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected a (N, H, W, 4) uint8 array, got {arr.shape} {arr.dtype}"
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


def keep_batch(batch: Batch) -> Batch:
    """The collate function: :meth:`ArrayDataset.__getitems__` already built the batch."""
    return batch


@dataclass(frozen=True)
class ArrayRows:
    """Samples picked from preprocessed arrays, in order: (array, row) pairs.

    A model trains and predicts on the rows its manifest lists: a split's own array, or for a
    cross-validation fold the rows of its images in the train and val arrays of the split it
    was cut from (:func:`select_rows`), so the folds share one preprocessed copy of the data.
    """

    paths: tuple[str, ...]
    rows: tuple[tuple[int, int], ...]

    @classmethod
    def whole(cls, path: str | Path) -> ArrayRows:
        """Every row of one array."""
        return cls((str(path),), tuple((0, i) for i in range(len(load_array(path)))))

    def digest(self) -> str:
        """Identifies the samples: the arrays' contents and the rows picked."""
        h = hashlib.sha256()
        for path in self.paths:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    h.update(chunk)
        h.update(repr(self.rows).encode())
        return h.hexdigest()


def select_rows(
    manifest_csv: str | Path,
    arrays: Sequence[str | Path],
    array_manifests: Sequence[str | Path],
) -> ArrayRows:
    """The rows of ``arrays`` holding the images ``manifest_csv`` lists, in its order.

    Each array was written from the manifest at the same position of ``array_manifests``
    (:func:`preprocess_split`: row i is the manifest's row i). Raises ValueError naming the
    manifest for an id that none of the arrays holds, or an array whose length differs from
    its manifest's.
    """
    where: dict[str, tuple[int, int]] = {}
    for a, (array, listed) in enumerate(zip(arrays, array_manifests, strict=True)):
        ids = read_manifest(listed)["id"].tolist()
        length = len(load_array(array))
        if length != len(ids):
            raise ValueError(f"{array} holds {length} samples but {listed} lists {len(ids)}")
        where.update({image_id: (a, row) for row, image_id in enumerate(ids)})
    wanted = read_manifest(manifest_csv)["id"].tolist()
    missing = [image_id for image_id in wanted if image_id not in where]
    if missing:
        raise ValueError(
            f"{manifest_csv}: {len(missing)} images are in none of the arrays "
            f"{', '.join(map(str, arrays))} (first: {missing[0]!r})"
        )
    return ArrayRows(tuple(map(str, arrays)), tuple(where[i] for i in wanted))


class ArrayDataset(Dataset):
    """A preprocessed split, read a batch at a time.

    The loader asks for a list of items (``__getitems__``): plain indices, or (index, sample seed)
    pairs from :class:`EpochSampler`. One fancy-indexing read of the memory map copies those
    samples into one tensor; augmentation and normalisation happen later, on the device, for the
    whole batch (:func:`segpipe.runtime.prepare_batch`). Build the loader with :func:`batch_loader`.
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
        samples = torch.from_numpy(samples)
        seeds = tuple(s for _, s in pairs if s is not None)
        return Batch(samples, seeds if len(seeds) == len(pairs) else ())

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
        collate_fn=keep_batch,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=generator,
    )
