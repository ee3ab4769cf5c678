"""Check every image/mask pair and remap raw mask values to class ids (uint8 PNG masks).

Mask kinds, all through one :class:`RemapSpec`:

- class ids or greyscale intensities (``table``: raw value -> class id, e.g. ``{0: 0, 255: 1}``
  for a binary membrane mask, or seven intensity levels for seven classes);
- palette PNGs (VOC): the palette *indices* are the raw values (``table`` 0..20, and
  ``ignore_value: 255`` for VOC's boundary pixels);
- RGB colour masks (``colors``: (r, g, b) -> class id); palette and greyscale masks are read as
  their colours too when a colour table is given.

Every image is decoded completely here, in a process pool, so training never meets a truncated or
corrupt file; what a file really is (a PNG named ``.jpg``, CMYK, 16-bit...) is logged, naming it.
Pairs that cannot be used are quarantined (file, problem) and the run fails when more than
``max_quarantine_fraction`` of the pairs are lost. Input files are only ever read.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from segpipe.datasets import index_dataset, is_lost_pair
from segpipe.images import inspect_image
from segpipe.io import atomic_dir, write_csv
from segpipe.logs import progress

logger = logging.getLogger(__name__)
UNMAPPED = -1
UNMAPPED_POLICIES = ("error", "ignore", "quarantine")
INDEX_COLUMNS = ["id", "image", "mask", "raw_mask", "group", "official_split", "height", "width"]


class UnmappedValuesError(ValueError):
    """A mask holds values that the remap table does not cover."""


class MaskError(ValueError):
    """A mask that can be decoded but not used as it is (colour mask without remap.colors...)."""


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> int64 keys ``r << 16 | g << 8 | b``."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_rgb(key: int) -> tuple[int, int, int]:
    return (int(key) >> 16) & 255, (int(key) >> 8) & 255, int(key) & 255


@dataclass(frozen=True)
class RemapSpec:
    """How raw mask values become class ids.

    ``table`` maps raw values (greyscale, class ids, palette indices); ``colors`` maps RGB
    colours and, when given, replaces the table. ``table=None`` with no colours counts raw values
    without mapping them (``segpipe verify`` without a table).
    """

    table: dict[int, int] | None
    ignore_value: int | None = None
    unmapped: str = "error"  # "error", "ignore" or "quarantine"
    ignore_index: int = 255
    colors: dict[tuple[int, int, int], int] = field(default_factory=dict)

    @property
    def by_color(self) -> bool:
        return bool(self.colors)

    @property
    def counts_only(self) -> bool:
        """No table and no colours: raw values are counted, not mapped (``segpipe verify``)."""
        return self.table is None and not self.colors

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Class id of each raw key (a value, or a packed colour); :data:`UNMAPPED` if unknown."""
        if self.by_color:
            mapping = {
                int(pack_rgb(np.asarray(c, dtype=np.uint8))): k for c, k in self.colors.items()
            }
        elif self.table is None:
            return keys.astype(np.int64)
        else:
            mapping = dict(self.table)
            if self.ignore_value is not None:
                mapping[self.ignore_value] = self.ignore_index
        return np.array([mapping.get(int(k), UNMAPPED) for k in keys], dtype=np.int64)

    def describe(self, keys) -> list:
        """Raw keys as users write them: values, or [r, g, b] colours."""
        return [list(unpack_rgb(k)) if self.by_color else int(k) for k in keys]

    def known(self) -> str:
        if self.by_color:
            return f"remap.colors {[list(c) for c in self.colors]}"
        return f"remap.table {sorted(self.table or {})}"


def make_spec(
    table: dict | None,
    *,
    colors: list[dict] | dict | None = None,
    ignore_value: int | None = None,
    unmapped: str = "error",
    ignore_index: int = 255,
) -> RemapSpec:
    """A :class:`RemapSpec` from config values (``colors`` as ``[{color: [r, g, b], class: id}]``)."""
    if unmapped not in UNMAPPED_POLICIES:
        raise ValueError(f"remap.unmapped: unknown '{unmapped}'; valid: {list(UNMAPPED_POLICIES)}")
    color_map: dict[tuple[int, int, int], int] = {}
    items = (
        colors.items()
        if isinstance(colors, dict)
        else [(c["color"], c["class"]) for c in colors or []]
    )
    for color, cls in items:
        key = tuple(int(v) for v in color)
        if len(key) != 3 or not all(0 <= v <= 255 for v in key):
            raise ValueError(f"remap.colors: {list(color)} is not an [r, g, b] colour")
        if key in color_map and color_map[key] != int(cls):
            raise ValueError(f"remap.colors: colour {list(key)} maps to two classes")
        color_map[key] = int(cls)
    table = None if table is None else {int(k): int(v) for k, v in table.items()}
    return RemapSpec(table, ignore_value, unmapped, ignore_index, color_map)


def read_mask_values(path: str | Path) -> np.ndarray:
    """Raw mask values as a 2-D integer array.

    Palette PNGs give palette indices, 1-bit masks 0/255; an RGB(A) mask is accepted only when its
    channels are equal (a greyscale mask saved as RGB); alpha is dropped.
    """
    with Image.open(path) as img:
        img.load()
        if img.mode == "1":
            img = img.convert("L")
        elif img.mode in ("LA", "La"):
            img = img.getchannel(0)
        arr = np.asarray(img)
    if arr.ndim == 3:
        if not (arr[..., :3] == arr[..., :1]).all():
            raise MaskError(
                f"{path}: colour mask (R, G and B differ): map its colours with remap.colors"
            )
        arr = arr[..., 0]
    return arr.astype(np.int64)


def read_mask_colors(path: str | Path) -> np.ndarray:
    """A mask's pixel colours as packed RGB keys (palette and greyscale masks as their colours;
    alpha dropped)."""
    with Image.open(path) as img:
        img.load()
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        rgb = np.asarray(img.convert("RGB"))
    return pack_rgb(rgb)


def remap_array(values: np.ndarray, spec: RemapSpec, source: str = "mask") -> np.ndarray:
    """Apply the table to raw values (or packed colours); unmapped ones raise, naming ``source``
    and the values, unless ``spec.unmapped`` is 'ignore' (then they become ``ignore_index``)."""
    mapped = _map(values, spec)
    if mapped.missing and spec.unmapped != "ignore":
        raise UnmappedValuesError(_unmapped_message(source, mapped.missing, spec))
    return mapped.out


@dataclass
class _Mapped:
    out: np.ndarray  # uint8 class ids; unmapped keys as ignore_index
    keys: np.ndarray  # distinct raw keys
    counts: np.ndarray  # pixels per key
    missing: list  # unmapped keys as users write them


def _map(values: np.ndarray, spec: RemapSpec) -> _Mapped:
    if values.size and values.min() < 0:
        raise MaskError(f"negative mask values {sorted(set(values[values < 0].tolist()))}")
    keys, inverse, counts = np.unique(values.ravel(), return_inverse=True, return_counts=True)
    classes = spec.lookup(keys)
    missing = classes == UNMAPPED
    classes[missing] = spec.ignore_index
    if (classes > 255).any() and not spec.counts_only:
        raise MaskError(f"class ids above 255 {sorted(set(classes[classes > 255].tolist()))}")
    out = classes[inverse.ravel()].reshape(values.shape).astype(np.uint8)
    return _Mapped(out, keys, counts, spec.describe(keys[missing]))


def _unmapped_message(source: str, found: list, spec: RemapSpec) -> str:
    kind = "colours" if spec.by_color else "values"
    return (
        f"{source}: mask {kind} {found} are not in {spec.known()} "
        "(add them to the table, set remap.ignore_value, or remap.unmapped: ignore/quarantine)"
    )


def check_pair(row: dict, spec: RemapSpec) -> tuple[dict, np.ndarray | None]:
    """Decode one image and its mask completely and remap the mask.

    Returns ``(result, class_id_mask)``. ``result`` is ``row`` plus ``image_format``,
    ``image_mode``, ``width``, ``height``, ``value_counts`` (raw value or (r, g, b) -> pixels),
    ``class_counts`` (class id -> pixels) and ``notes`` ((level, message) log lines); a pair
    that cannot be used has ``problem`` and ``problem_file`` instead of a mask, and ``fatal``
    when it must stop the run (unmapped values with ``unmapped='error'``).
    """
    result: dict[str, Any] = {**row, "notes": [], "fatal": False}
    image, mask = row["image"], row["raw_mask"]

    def problem(file: str, text: str, fatal: bool = False):
        return {**result, "problem": text, "problem_file": file, "fatal": fatal}, None

    try:
        info = inspect_image(image)
    except Exception as exc:  # Pillow raises many types for corrupt files
        return problem(image, f"unreadable image ({type(exc).__name__}: {exc})")
    result.update(
        image_format=info.format, image_mode=info.mode, width=info.width, height=info.height
    )
    result["notes"] += [(level, f"{image}: {text}") for level, text in info.notes]
    try:
        values = read_mask_colors(mask) if spec.by_color else read_mask_values(mask)
        mapped = _map(values, spec)
    except MaskError as exc:
        return problem(mask, str(exc).removeprefix(f"{mask}: "))
    except Exception as exc:
        return problem(mask, f"unreadable mask ({type(exc).__name__}: {exc})")
    if values.shape != (info.height, info.width):
        return problem(
            mask,
            f"mask {values.shape[1]}x{values.shape[0]} and image {info.width}x{info.height} "
            "differ in size",
        )
    described = spec.describe(mapped.keys)
    result["value_counts"] = {
        (tuple(k) if spec.by_color else k): c
        for k, c in zip(described, mapped.counts.tolist(), strict=True)
    }
    if mapped.missing:
        message = _unmapped_message(mask, mapped.missing, spec)
        if spec.unmapped == "error":
            return problem(mask, message, fatal=True)
        if spec.unmapped == "quarantine":
            return problem(mask, message.removeprefix(f"{mask}: "))
        result["notes"].append((logging.WARNING, message + ": marked as ignored"))
    classes, class_counts = np.unique(mapped.out, return_counts=True)
    result["class_counts"] = dict(zip(classes.tolist(), class_counts.tolist(), strict=True))
    labelled = [c for c in result["class_counts"] if spec.counts_only or c != spec.ignore_index]
    if not labelled:
        return problem(mask, f"no labelled pixel: every mask value {described} maps to ignore")
    if len(mapped.keys) == 1:
        result["notes"].append(
            (
                logging.WARNING,
                f"{mask}: mask holds a single value {described[0]} (class {labelled[0]}): "
                "kept; check it is not blank",
            )
        )
    return result, mapped.out


def _remap_one(args: tuple[dict, RemapSpec, str | None]) -> dict:
    row, spec, out_dir = args
    result, out = check_pair(row, spec)
    if out is not None and out_dir is not None:
        mask_path = os.path.join(out_dir, f"{row['id']}.png")
        Image.fromarray(out, mode="L").save(mask_path, format="PNG")
        result["mask"] = mask_path
    return result


def check_pairs(
    frame: pd.DataFrame, spec: RemapSpec, out_dir: str | Path | None = None, threads: int = 1
) -> list[dict]:
    """:func:`check_pair` for every row, in ``threads`` processes; masks written to ``out_dir``."""
    jobs = [
        (row, spec, None if out_dir is None else str(out_dir)) for row in frame.to_dict("records")
    ]
    if threads <= 1 or len(jobs) < 2:
        return list(progress(map(_remap_one, jobs), desc="check pairs", total=len(jobs)))
    with ProcessPoolExecutor(max_workers=threads) as pool:
        return list(
            progress(pool.map(_remap_one, jobs, chunksize=16), desc="check pairs", total=len(jobs))
        )


def log_results(results: list[dict], quarantine: list[tuple[str, str]]) -> None:
    """One log line per conversion, oddity and quarantined file, each naming the file."""
    for r in results:
        for level, message in r["notes"]:
            logger.log(level, message)
    for file, problem in quarantine:
        logger.warning("quarantined %s: %s", file, problem)


def quarantine_rows(
    index_quarantine: list[tuple[str, str]], results: list[dict]
) -> list[tuple[str, str]]:
    return list(index_quarantine) + [
        (r["problem_file"], r["problem"]) for r in results if "problem" in r and not r["fatal"]
    ]


def lost_fraction(
    frame: pd.DataFrame, index_quarantine: list[tuple[str, str]], results: list[dict]
) -> tuple[int, int]:
    """(lost pairs, all pairs): unpaired files and pairs that failed the checks, over the pairs
    found plus the unpaired files. Stray non-image files are not counted."""
    unpaired = sum(is_lost_pair(problem) for _, problem in index_quarantine)
    failed = sum("problem" in r for r in results)
    return unpaired + failed, len(frame) + unpaired


def index_with_spec(
    layout: str,
    root: str | Path,
    *,
    table: dict[int, int] | None,
    colors: list[dict] | None = None,
    ignore_value: int | None = None,
    unmapped: str = "error",
    ignore_index: int = 255,
    images_dir: str | None = None,
    masks_dir: str | None = None,
    mask_suffix: str = "",
    split_lists: dict[str, str | None] | None = None,
) -> tuple[RemapSpec, pd.DataFrame, list[tuple[str, str]]]:
    """The remap spec and the pairs of ``root`` in ``layout``, as remap and verify both start."""
    spec = make_spec(
        table,
        colors=colors,
        ignore_value=ignore_value,
        unmapped=unmapped,
        ignore_index=ignore_index,
    )
    frame, index_quarantine = index_dataset(
        layout,
        Path(root),
        images_dir=images_dir,
        masks_dir=masks_dir,
        mask_suffix=mask_suffix,
        split_lists=split_lists,
    )
    return spec, frame, index_quarantine


def remap_dataset(
    dataset_dir: str | Path,
    masks_out: str | Path,
    index_out: str | Path,
    quarantine_out: str | Path,
    *,
    layout: str,
    table: dict[int, int],
    colors: list[dict] | None = None,
    ignore_index: int = 255,
    ignore_value: int | None = None,
    unmapped: str = "error",
    images_dir: str | None = None,
    masks_dir: str | None = None,
    mask_suffix: str = "",
    split_lists: dict[str, str | None] | None = None,
    threads: int = 1,
    max_quarantine_fraction: float = 0.1,
    class_names: list[str] | None = None,
) -> pd.DataFrame:
    """Index ``dataset_dir``, check and remap every pair, and write masks, an index CSV and a
    quarantine CSV (file, problem).

    The masks directory is written atomically (temp dir, then rename). Pairs that cannot be used go
    to the quarantine CSV; if more than ``max_quarantine_fraction`` of the pairs are lost, or any
    mask has unmapped values with ``unmapped='error'``, it raises (the quarantine CSV is still
    written, so the report of a later fixed run and the user see every problem).
    """
    from segpipe.verify import format_summary, summarize

    spec, frame, index_quarantine = index_with_spec(
        layout,
        dataset_dir,
        table=table,
        colors=colors,
        ignore_value=ignore_value,
        unmapped=unmapped,
        ignore_index=ignore_index,
        images_dir=images_dir,
        masks_dir=masks_dir,
        mask_suffix=mask_suffix,
        split_lists=split_lists,
    )
    if frame.empty:
        for file, problem in index_quarantine[:20]:
            logger.warning("quarantined %s: %s", file, problem)
        write_csv(quarantine_out, pd.DataFrame(index_quarantine, columns=["file", "problem"]))
        raise ValueError(
            f"{dataset_dir}: no image/mask pairs found (layout '{layout}'); "
            f"{len(index_quarantine)} files quarantined, see {quarantine_out}"
        )
    logger.info("checking and remapping %d pairs with %d processes", len(frame), threads)
    masks_out = Path(masks_out)
    with atomic_dir(masks_out) as tmp:
        results = check_pairs(frame, spec, tmp, max(1, threads))
        quarantine = quarantine_rows(index_quarantine, results)
        log_results(results, quarantine)
        write_csv(quarantine_out, pd.DataFrame(quarantine, columns=["file", "problem"]))
        fatal = [r["problem"] for r in results if r.get("fatal")]
        if fatal:
            raise UnmappedValuesError(
                f"{len(fatal)} mask(s) hold values outside the remap table:\n  "
                + "\n  ".join(fatal[:10])
            )
        lost, total = lost_fraction(frame, index_quarantine, results)
        if lost > max_quarantine_fraction * total:
            problems = "\n  ".join(f"{f}: {p}" for f, p in quarantine[:5])
            raise ValueError(
                f"{lost} of {total} pairs in {dataset_dir} are unusable (more than "
                f"remap.max_quarantine_fraction={max_quarantine_fraction}); see {quarantine_out}. "
                f"First problems:\n  {problems}"
            )
    summary = summarize(frame, index_quarantine, results, spec, class_names=class_names)
    logger.info("dataset summary:\n%s", format_summary(summary))
    good = [r for r in results if "problem" not in r]
    index = pd.DataFrame(good)
    index["mask"] = [str(masks_out / Path(p).name) for p in index["mask"]]
    write_csv(index_out, index[INDEX_COLUMNS])
    logger.info(
        "remapped %d masks into %s (%d files quarantined)", len(index), masks_out, len(quarantine)
    )
    return index[INDEX_COLUMNS]
