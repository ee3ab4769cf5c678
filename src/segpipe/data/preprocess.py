"""Preprocessed splits on disk: every image decoded and resized once into one memory-mapped array.

A split becomes one ``.npy`` file of shape (N, H, W, 4), uint8: RGB in channels 0-2 and the
class-id mask in channel 3, in the order of the split manifest; H = W = ``train.image_size``
when the images are squashed to it, else the largest image at ``train.image_scale``. Training and
prediction read samples by index from the memory map (:mod:`segpipe.data.arrays`), so they never
decode an image per step. This module needs no torch: rule preprocess starts in a fraction of a
second.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from segpipe.data.images import load_rgb
from segpipe.data.masks import load_mask
from segpipe.data.split import read_manifest
from segpipe.io import atomic_path
from segpipe.logs import progress
from segpipe.processes import die_with_parent

logger = logging.getLogger(__name__)


def _decode(args: tuple[str, str | None, tuple[int, int]]) -> np.ndarray:
    """One sample resized to (height, width): RGB bilinear, mask nearest."""
    image_path, mask_path, (height, width) = args
    out = np.zeros((height, width, 4), dtype=np.uint8)
    out[..., :3] = np.asarray(
        load_rgb(image_path, None).resize((width, height), Image.Resampling.BILINEAR)
    )
    if mask_path:
        out[..., 3] = np.asarray(
            Image.fromarray(load_mask(mask_path)).resize((width, height), Image.Resampling.NEAREST)
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
        allocate(tmp)
        if scale is not None:
            arr[..., 3] = ignore_index
        with ProcessPoolExecutor(
            max_workers=max(1, threads), initializer=die_with_parent, initargs=(os.getpid(),)
        ) as pool:
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


def allocate(path: str | Path) -> None:
    """Give the (sparse) file at ``path`` its disk blocks now: a full disk or a quota is then an
    OSError here, not a SIGBUS that kills the process when a write into its memory map finds
    no block. File systems that cannot allocate ahead (EOPNOTSUPP) are left as they are."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def load_array(path: str | Path) -> np.ndarray:
    """The (N, H, W, 4) uint8 array of a preprocessed split, memory-mapped read-only."""
    arr = np.load(path, mmap_mode="r")
    if arr.ndim != 4 or arr.shape[-1] != 4 or arr.dtype != np.uint8:
        raise ValueError(
            f"{path}: expected a (N, H, W, 4) uint8 array, got {arr.shape} {arr.dtype}"
        )
    return arr


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
                # file_digest reads the file into the hash its factory returns: this one, h
                hashlib.file_digest(fh, lambda: h)
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
