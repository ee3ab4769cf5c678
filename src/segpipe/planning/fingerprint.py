"""A dataset's fingerprint: what the planning rules read, as JSON-ready data (no torch).

:func:`fingerprint_dataset` reads a dataset once, with the remap step's own indexing
(:func:`segpipe.data.remap.index_with_spec`), checks (:func:`segpipe.data.remap.check_pair`: every
image and mask decoded whole, paired, sized; raw mask values counted, or colours for RGB masks)
and summary (:func:`segpipe.data.summary.summarize`), and measures the structures of every mask
(:mod:`segpipe.planning.structures`). A dataset of more than ``sample`` pairs is read as a seeded
sample of that many, and the fingerprint says so. Its sections:

- ``pairs``: found, read, usable, unusable, unpaired and stray files; ``sample``;
- ``quarantine``: every unusable or unpaired file with its problem; ``warnings``;
- ``images``: height, width and aspect ratio (width / height) as min, p10, median, p90, max;
  modes, channels and real formats;
- ``masks``: the encoding (``values``: class ids, grey levels or palette indices; ``colours``:
  RGB colours; ``mixed``) and the ``kind`` in words, the mask modes, the palette, distinct values
  per mask;
- ``values``: per raw value (or [r, g, b] colour): pixels, pixel share, images it is in, and the
  size of its structures: the 5th percentile and median of its components' area and shorter
  bounding-box side, and of its pixels' structure width (the width of the thinnest 5% of its
  pixels, and of the median pixel; :mod:`segpipe.planning.structures`);
- ``duplicates``: groups of identical images; ``split_lists``: the pairs per official list.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from segpipe.data.dataset_layouts import check_split_lists
from segpipe.data.images import DEFAULT_MAX_IMAGE_PIXELS, open_image
from segpipe.data.remap import RemapSpec, check_pair, index_with_spec, map_pairs, unpack_rgb
from segpipe.data.summary import summarize
from segpipe.planning.rules import DEFAULT_SAMPLE, is_class_ids
from segpipe.planning.structures import MEASURES, measure_structures

logger = logging.getLogger(__name__)

FINGERPRINT_VERSION = 1
MEASURED_VALUES = 64
"""Masks holding more distinct values than this are not measured (intensity images, not labels)."""
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")
"""Mask modes read as colours; every other mode is read as values (palette masks as indices)."""
SHOWN_WARNINGS = 100  # warnings kept in the fingerprint (their count is kept too)


def quantiles(values: list | np.ndarray) -> dict[str, float] | None:
    """min, p10, median, p90 and max of ``values`` (None when empty)."""
    if len(values) == 0:
        return None
    found = np.percentile(np.asarray(values, dtype=float), [0, 10, 50, 90, 100])
    return dict(
        zip(
            ("min", "p10", "median", "p90", "max"), (round(float(v), 4) for v in found), strict=True
        )
    )


def _mask_header(path: str) -> tuple[str | None, dict[int, list[int]]]:
    """A mask's mode and, for a palette mask, its palette (index -> [r, g, b]), from its
    header; (None, {}) when it cannot be opened (check_pair then says why)."""
    try:
        with open_image(path) as img:
            palette = img.getpalette() if img.mode in ("P", "PA") else None
            mode = img.mode
    except Exception:  # an unreadable mask is check_pair's to report
        return None, {}
    if not palette:
        return mode, {}
    return mode, {i: palette[3 * i : 3 * i + 3] for i in range(len(palette) // 3)}


def read_pair(job: tuple[dict, int | None, int]) -> dict:
    """One pair checked as remap checks it (raw values counted, or colours for an RGB mask),
    with its mask's structures measured; the result of :func:`check_pair`, lighter."""
    row, max_pixels, seed = job
    mode, palette = _mask_header(row["raw_mask"])
    colours = mode in COLOUR_MODES
    result, keys = check_pair(row, RemapSpec(None, count_colors=colours), max_pixels)
    result.update(mask_mode=mode, read_as="colours" if colours else "values")
    if keys is None:
        return result
    found = list(result["value_counts"])
    result["distinct"] = len(found)
    if palette:
        result["palette"] = {v: palette[v] for v in found if v in palette}
    if len(found) <= MEASURED_VALUES:
        measured = measure_structures(keys, seed=seed)
        result["structures"] = {
            (unpack_rgb(k) if colours else k): value for k, value in measured.items()
        }
    return result


def _read_pairs(frame: pd.DataFrame, max_pixels: int | None, seed: int, threads: int):
    jobs = [(row, max_pixels, seed) for row in frame.to_dict("records")]
    return map_pairs(read_pair, jobs, threads, "fingerprint", chunksize=8)


def fingerprint_dataset(
    root: str | Path,
    *,
    layout: str = "folder",
    images_dir: str | None = None,
    masks_dir: str | None = None,
    mask_suffix: str = "",
    split_lists: dict[str, str | None] | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    threads: int = 1,
) -> dict[str, Any]:
    """Read ``root`` once (a seeded sample of ``sample`` pairs when it has more; None or 0:
    every pair) and return its fingerprint (see the module docstring). A split-list line that
    names no pair raises, as the remap step does."""
    _, frame, index_quarantine = index_with_spec(
        layout,
        root,
        table=None,
        images_dir=images_dir,
        masks_dir=masks_dir,
        mask_suffix=mask_suffix,
        split_lists=split_lists,
    )
    check_split_lists(index_quarantine)
    read = frame
    if sample and len(frame) > sample:
        read = frame.sample(n=sample, random_state=seed).sort_values("id")
        logger.warning(
            "%d pairs: reading a seeded sample of %d (seed %d)", len(frame), sample, seed
        )
    results = _read_pairs(read, max_image_pixels, seed, threads) if len(read) else []
    summary = summarize(frame, index_quarantine, results, RemapSpec(None), root=root, layout=layout)
    usable = [r for r in results if "problem" not in r]
    encoding = _encoding(usable)
    return {
        "fingerprint_version": FINGERPRINT_VERSION,
        "dataset": {
            "root": str(root),
            "layout": layout,
            "images_dir": images_dir,
            "masks_dir": masks_dir,
            "mask_suffix": mask_suffix,
            "split_lists": split_lists,
        },
        "pairs": {
            "found": len(frame),
            "read": len(read),
            "usable": len(usable),
            "unusable": len(results) - len(usable),
            "unpaired_files": summary["unpaired_files"],
            "stray_files": summary["stray_files"],
        },
        "sample": (
            {"pairs": len(read), "of": len(frame), "seed": seed} if len(read) < len(frame) else None
        ),
        "quarantine": summary["problems"],
        "warnings": summary["warnings"][:SHOWN_WARNINGS],
        "warning_count": len(summary["warnings"]),
        "images": _image_figures(usable, summary),
        "masks": _mask_figures(usable, encoding),
        "values": _values(usable, encoding),
        "duplicates": summary["duplicate_images"],
        "split_lists": summary["official_splits"],
    }


def _image_figures(usable: list[dict], summary: dict) -> dict[str, Any]:
    return {
        "height": quantiles([r["height"] for r in usable]),
        "width": quantiles([r["width"] for r in usable]),
        "aspect": quantiles([r["width"] / r["height"] for r in usable]),
        "modes": dict(Counter(r["image_mode"] for r in usable).most_common()),
        "channels": {
            str(k): v
            for k, v in Counter(Image.getmodebands(r["image_mode"]) for r in usable).items()
        },
        "formats": summary["image_formats"],
    }


def _is_grey(key: Any) -> bool:
    return isinstance(key, tuple) and key[0] == key[1] == key[2]


def _encoding(usable: list[dict]) -> str:
    """values (every mask read as values, or as colours that are all grey: R = G = B, read by
    remap as values), colours (every mask as colours, some not grey), or mixed."""
    as_colours = [r for r in usable if r["read_as"] == "colours"]
    grey = all(_is_grey(k) for r in as_colours for k in r["value_counts"])
    if not as_colours or grey:
        return "values"
    return "colours" if len(as_colours) == len(usable) else "mixed"


def _key(key: Any, encoding: str) -> Any:
    """A raw key as the plan names it: an int value (a grey colour read as its value), or an
    (r, g, b) tuple."""
    if encoding == "values" and _is_grey(key):
        return int(key[0])
    return key


def _mask_figures(usable: list[dict], encoding: str) -> dict[str, Any]:
    distinct = [r["distinct"] for r in usable]
    palettes = {}
    for r in usable:
        palettes.update(r.get("palette", {}))
    return {
        "encoding": encoding,
        "kind": mask_kind(usable, encoding, distinct, bool(palettes)),
        "modes": dict(Counter(r["mask_mode"] for r in usable).most_common()),
        "distinct_per_mask": (
            {"median": float(np.median(distinct)), "max": int(max(distinct))} if distinct else None
        ),
        "distinct": len({_key(k, encoding) for r in usable for k in r["value_counts"]}),
        "measured": all("structures" in r for r in usable),
        "palette": {str(k): v for k, v in sorted(palettes.items())} or None,
    }


def mask_kind(usable: list[dict], encoding: str, distinct: list[int], palette: bool) -> str:
    """What the masks hold, in words: RGB colours, palette indices, binary 0/255, class ids
    (consecutive from 0 or 1), intensities (over MEASURED_VALUES values in the median mask) or
    grey levels."""
    if encoding != "values":
        return "RGB colours" if encoding == "colours" else "mixed colours and values"
    values = sorted({_key(k, encoding) for r in usable for k in r["value_counts"]})
    if distinct and float(np.median(distinct)) > MEASURED_VALUES:
        return "intensities"
    if palette:
        return "palette indices"
    if values == [0, 255]:
        return "binary 0/255"
    return "class ids" if is_class_ids(values) else "grey levels"


def _values(usable: list[dict], encoding: str) -> list[dict[str, Any]]:
    """Per raw key: pixels, share, images and structures (the keys of every usable mask)."""
    pixels: Counter = Counter()
    images: Counter = Counter()
    measured: dict[Any, list[dict]] = {}
    for r in usable:
        for key, count in r["value_counts"].items():
            key = _key(key, encoding)
            pixels[key] += count
            images[key] += 1
        for key, found in r.get("structures", {}).items():
            measured.setdefault(_key(key, encoding), []).append(found)
    total = sum(pixels.values()) or 1
    rows = []
    for key in sorted(pixels, key=lambda k: (isinstance(k, tuple), k)):
        rows.append(
            {
                "value": list(key) if isinstance(key, tuple) else key,
                "pixels": int(pixels[key]),
                "share": round(pixels[key] / total, 6),
                "images": int(images[key]),
                "image_share": round(images[key] / len(usable), 4),
                "structures": _structure_figures(measured.get(key, [])),
            }
        )
    return rows


def _structure_figures(found: list[dict]) -> dict[str, Any] | None:
    """A value's structures over every mask: counts, and each measure's p5 and median."""
    if not found:
        return None
    figures: dict[str, Any] = {
        "components": sum(f["components"] for f in found),
        "specks": sum(f["specks"] for f in found),
    }
    for measure in MEASURES:
        values = np.concatenate([f[measure] for f in found]).astype(float)
        figures[measure] = (
            {
                "p5": round(float(np.percentile(values, 5)), 2),
                "median": round(float(np.median(values)), 2),
            }
            if values.size
            else None
        )
    figures["measured"] = int(sum(len(f["area"]) for f in found))
    widths = _summed([f["widths"] for f in found])
    figures["width"] = (
        {"p5": histogram_percentile(widths, 5), "median": histogram_percentile(widths, 50)}
        if widths.any()
        else None
    )
    return figures


def _summed(histograms: list[np.ndarray]) -> np.ndarray:
    total = np.zeros(max(len(h) for h in histograms), dtype=np.int64)
    for h in histograms:
        total[: len(h)] += h
    return total


def histogram_percentile(histogram: np.ndarray, q: float) -> int:
    """The smallest width w such that ``q`` percent of the histogram's pixels are at most w
    wide (``histogram[w]``: the pixels of width w)."""
    cumulative = np.cumsum(histogram)
    return int(np.searchsorted(cumulative, q / 100 * cumulative[-1]))
