"""Remap raw mask values to class ids and write uint8 PNG class-id masks."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from segpipe.datasets import index_dataset
from segpipe.io import atomic_dir, write_csv
from segpipe.logs import progress

logger = logging.getLogger(__name__)
UNMAPPED = -1


class UnmappedValuesError(ValueError):
    """A mask holds values that the remap table does not cover."""


@dataclass(frozen=True)
class RemapSpec:
    table: dict[int, int]
    ignore_value: int | None
    unmapped: str  # "error" or "ignore"
    ignore_index: int

    def lut(self, size: int) -> np.ndarray:
        lut = np.full(size, UNMAPPED, dtype=np.int32)
        for raw, cls in self.table.items():
            if raw < size:
                lut[raw] = cls
        if self.ignore_value is not None and self.ignore_value < size:
            lut[self.ignore_value] = self.ignore_index
        return lut


def read_mask_values(path: str | Path) -> np.ndarray:
    """Raw mask values as a 2-D integer array (palette PNGs give palette indices)."""
    with Image.open(path) as img:
        arr = np.asarray(img)
    if arr.ndim == 3:
        if not (arr[..., :3] == arr[..., :1]).all():
            raise ValueError(f"{path}: colour mask (RGB values differ), expected a single channel")
        arr = arr[..., 0]
    return arr.astype(np.int64)


def remap_array(values: np.ndarray, spec: RemapSpec, source: str = "mask") -> np.ndarray:
    """Apply the table; unmapped values raise (naming ``source`` and the values) or become ignored."""
    if values.size and values.min() < 0:
        raise UnmappedValuesError(
            f"{source}: negative mask values {sorted(set(values[values < 0]))}"
        )
    lut = spec.lut(max(int(values.max(initial=0)) + 1, 256))
    out = lut[values]
    missing = out == UNMAPPED
    if missing.any():
        found = np.unique(values[missing]).tolist()
        if spec.unmapped == "error":
            raise UnmappedValuesError(
                f"{source}: mask values {found} are not in remap.table {sorted(spec.table)} "
                "(add them to the table, set remap.ignore_value, or remap.unmapped: ignore)"
            )
        out[missing] = spec.ignore_index
    return out.astype(np.uint8)


def _remap_one(args: tuple[dict, RemapSpec, str]) -> dict:
    row, spec, out_dir = args
    try:
        with Image.open(row["image"]) as img:
            width, height = img.size
        values = read_mask_values(row["raw_mask"])
        if values.shape != (height, width):
            return {
                **row,
                "problem": f"mask {values.shape[::-1]} and image {(width, height)} differ in size",
            }
        out = remap_array(values, spec, source=row["raw_mask"])
    except UnmappedValuesError as exc:
        return {**row, "problem": str(exc), "fatal": spec.unmapped == "error"}
    except (OSError, ValueError) as exc:
        return {**row, "problem": f"unreadable: {exc}"}
    mask_path = os.path.join(out_dir, f"{row['id']}.png")
    Image.fromarray(out, mode="L").save(mask_path, format="PNG")
    return {**row, "height": height, "width": width, "mask": mask_path}


def remap_dataset(
    dataset_dir: str | Path,
    masks_out: str | Path,
    index_out: str | Path,
    quarantine_out: str | Path,
    *,
    layout: str,
    table: dict[int, int],
    ignore_index: int = 255,
    ignore_value: int | None = None,
    unmapped: str = "error",
    images_dir: str = "images",
    masks_dir: str = "masks",
    threads: int = 1,
    max_quarantine_fraction: float = 0.1,
) -> pd.DataFrame:
    """Index ``dataset_dir``, remap every mask, and write masks, an index CSV and a quarantine CSV.

    The masks directory is written atomically (temp dir, then rename). Pairs that cannot be used go
    to the quarantine CSV with the problem; if more than ``max_quarantine_fraction`` of the pairs
    are quarantined, or any mask has unmapped values with ``unmapped='error'``, it raises.
    """
    spec = RemapSpec(
        {int(k): int(v) for k, v in table.items()}, ignore_value, unmapped, ignore_index
    )
    frame, quarantine = index_dataset(
        layout, Path(dataset_dir), images_dir=images_dir, masks_dir=masks_dir
    )
    if frame.empty:
        raise ValueError(f"{dataset_dir}: no image/mask pairs found (layout '{layout}')")
    logger.info("remapping %d masks with %d processes", len(frame), threads)
    masks_out = Path(masks_out)
    with atomic_dir(masks_out) as tmp:
        jobs = [(row, spec, str(tmp)) for row in frame.to_dict("records")]
        with ProcessPoolExecutor(max_workers=max(1, threads)) as pool:
            results = list(
                progress(pool.map(_remap_one, jobs, chunksize=16), desc="remap", total=len(jobs))
            )
        fatal = [r["problem"] for r in results if r.get("fatal")]
        if fatal:
            raise UnmappedValuesError(
                f"{len(fatal)} mask(s) hold values outside remap.table:\n  "
                + "\n  ".join(fatal[:10])
            )
    good = [r for r in results if "problem" not in r]
    for r in results:
        if "problem" in r:
            quarantine.append((r["raw_mask"], r["problem"]))
    for file, problem in quarantine:
        logger.warning("quarantined %s: %s", file, problem)
    q = pd.DataFrame(quarantine, columns=["file", "problem"])
    write_csv(quarantine_out, q)
    bad = len(frame) - len(good)
    if bad > max_quarantine_fraction * len(frame):
        raise ValueError(
            f"{bad} of {len(frame)} pairs in {dataset_dir} are unusable (more than "
            f"max_quarantine_fraction={max_quarantine_fraction}); see {quarantine_out}"
        )
    index = pd.DataFrame(good)
    index["mask"] = [str(masks_out / Path(p).name) for p in index["mask"]]
    index = index[["id", "image", "mask", "raw_mask", "group", "official_split", "height", "width"]]
    write_csv(index_out, index)
    logger.info("remapped %d masks into %s (%d quarantined)", len(index), masks_out, len(q))
    return index
