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

Float masks (TIFF mode F) whose values are all integers are read as those integers; a float mask
holding other values (a probability map, NaN) has its non-integer pixels handled like unmapped
values, by ``remap.unmapped``: 'error' stops the run, 'quarantine' quarantines the pair, 'ignore'
maps those pixels to ``ignore_index``; each names the file and the values. Masks are oriented like
their images (see :mod:`segpipe.data.images`): values as stored, EXIF orientation applied if a mask
carries one.
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

from segpipe.data.dataset_layouts import check_split_lists, index_dataset, is_lost_pair
from segpipe.data.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    HIGH_BIT_MODES,
    SWAPS_AXES,
    ImageInfo,
    ImageTooLargeError,
    inspect_image,
    open_image,
    orientation_note,
    oriented,
)
from segpipe.data.summary import (
    duplicate_warnings,
    format_summary,
    logged_warnings,
    summarize,
)
from segpipe.io import atomic_dir, remove_stale_temporaries, write_csv
from segpipe.logs import UserError, progress
from segpipe.processes import die_with_parent

logger = logging.getLogger(__name__)
UNMAPPED = -1
UNMAPPED_POLICIES = ("error", "ignore", "quarantine")
"""What remap.unmapped may say to do with a value outside the table (``segpipe verify --unmapped``):
stop the run, mark the pixels as ignored, or quarantine the pair."""
INDEX_COLUMNS = [
    "id",
    "image",
    "mask",
    "raw_mask",
    "group",
    "official_split",
    "height",
    "width",
    "classes",  # class ids present in the mask, space-separated (ignore_index left out)
    "content",  # digest of the image's pixels: equal for identical images (images.content_digest)
]
BINCOUNT_LIMIT = 1 << 24
"""Integer mask values (or packed colours) below this are counted with np.bincount, which
neither sorts nor copies the mask as np.unique does."""
# Float mask values beyond this are no class id (and would overflow int64): counted as non-integer.
MAX_FLOAT_VALUE = 2.0**31
SHOWN_VALUES = 5  # offending float values named in a message


class DatasetError(UserError, ValueError):
    """The dataset cannot be used as configured: no pair found, too many unusable pairs, or
    masks that stop the run; the message names the folder or files and the quarantine list."""


class UnmappedValuesError(DatasetError):
    """A mask holds values that the remap table does not cover, or non-integer float values."""


class MaskError(ValueError):
    """A mask that can be decoded but not used as it is (colour mask without remap.colors...)."""


class NonIntegerMaskError(MaskError):
    """A float mask (e.g. a probability map) holding values that are not integers."""


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> uint32 keys ``r << 16 | g << 8 | b``."""
    packed = rgb[..., 0].astype(np.uint32) << 16
    packed |= rgb[..., 1].astype(np.uint32) << 8
    packed |= rgb[..., 2]
    return packed


def unpack_rgb(key: int) -> tuple[int, int, int]:
    return (int(key) >> 16) & 255, (int(key) >> 8) & 255, int(key) & 255


@dataclass(frozen=True)
class RemapSpec:
    """How raw mask values become class ids.

    ``table`` maps raw values (greyscale, class ids, palette indices); ``colors`` maps RGB
    colours and, when given, replaces the table. ``table=None`` with no colours counts raw values
    without mapping them (``segpipe verify`` without a table); with ``count_colors`` too, it
    counts the masks' colours (``segpipe plan`` reading a colour-mask dataset). Counting, the
    "mapped" mask of :func:`check_pair` is the raw keys themselves.
    """

    table: dict[int, int] | None
    ignore_value: int | None = None
    unmapped: str = "error"  # one of UNMAPPED_POLICIES
    ignore_index: int = 255
    colors: dict[tuple[int, int, int], int] = field(default_factory=dict)
    count_colors: bool = False  # with no table and no colours: count packed colours, not values

    @property
    def by_color(self) -> bool:
        return bool(self.colors) or (self.count_colors and self.table is None)

    @property
    def counts_only(self) -> bool:
        """No table and no colours: raw values (or colours) are counted, not mapped."""
        return self.table is None and not self.colors

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Class id of each raw key (a value, or a packed colour); :data:`UNMAPPED` if unknown."""
        if self.counts_only:
            return keys.astype(np.int64)
        if self.by_color:
            mapping = {
                int(pack_rgb(np.asarray(c, dtype=np.uint8))): k for c, k in self.colors.items()
            }
        else:
            mapping = dict(self.table or {})
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


def _raw_values(img: Image.Image, path: str | Path) -> np.ndarray:
    """A loaded mask's values as stored (float for float masks): palette PNGs (with or without
    alpha) give palette indices, 1-bit masks 0/255; an RGB(A) mask is accepted only when its
    channels are equal (a greyscale mask saved as RGB); alpha is dropped."""
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("LA", "La", "PA"):
        img = img.getchannel(0)  # the value, or the palette index; alpha dropped
    arr = np.asarray(img)
    if arr.ndim == 3:
        if not (arr[..., :3] == arr[..., :1]).all():
            raise MaskError(
                f"{path}: colour mask (R, G and B differ): map its colours with remap.colors"
            )
        arr = arr[..., 0]
    return arr


def _packed_colors(img: Image.Image) -> np.ndarray:
    """A loaded mask's colours as packed RGB keys (palette and greyscale masks as their colours;
    alpha dropped)."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return pack_rgb(np.asarray(img.convert("RGB")))


def read_raw_mask(
    path: str | Path, *, colors: bool = False, max_pixels: int | None = None
) -> tuple[np.ndarray, int]:
    """A dataset's raw mask, before remapping: its raw values (float for a float mask) or, with
    ``colors``, packed colours, oriented like its image (EXIF orientation applied if it has
    one); and that orientation (1: none). A mask of more than ``max_pixels`` pixels raises
    :class:`ImageTooLargeError` undecoded.

    Distinct from :func:`segpipe.data.masks.load_mask`, which reads the class-id masks this
    step writes (and predictions): a raw mask may be of any mode (16-bit, float, RGB colours,
    palette with alpha, 1-bit) and carry an EXIF orientation, which only remap interprets."""
    with open_image(path, max_pixels) as img:
        img.load()
        img, orientation = oriented(img)
        arr = _packed_colors(img) if colors else _raw_values(img, path)
    return arr, orientation


def split_non_integer(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Raw values as integers (an integer mask as it is, not copied; a float one as int64), and
    where a float mask holds no integer (None when every value is one, always for integer masks);
    those pixels are 0 in the int64 values."""
    if not np.issubdtype(raw.dtype, np.floating):
        return raw, None
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(raw) | (raw != np.round(raw)) | (np.abs(raw) >= MAX_FLOAT_VALUE)
    values = np.where(bad, 0, raw).astype(np.int64)
    return values, (bad if bad.any() else None)


def _non_integer_message(source: str | Path, raw: np.ndarray, bad: np.ndarray) -> str:
    found = np.unique(raw[bad])  # sorted, NaN last
    shown = [f"{v:.6g}" for v in found[:SHOWN_VALUES].tolist()]
    if len(found) > SHOWN_VALUES:
        shown.append(f"... {len(found)} distinct")
    return (
        f"{source}: non-integer mask values [{', '.join(shown)}] in {int(bad.sum())} pixels "
        "(a float mask, e.g. a probability map: save class ids as integers, "
        "or remap.unmapped: ignore/quarantine)"
    )


def read_mask_values(path: str | Path) -> np.ndarray:
    """Raw mask values as a 2-D int64 array, oriented like the image (see :func:`read_raw_mask`).

    A float mask whose values are all integers gives those integers; any other value raises
    :class:`NonIntegerMaskError` naming the file and the values.
    """
    raw, _ = read_raw_mask(path)
    values, bad = split_non_integer(raw)
    if bad is not None:
        raise NonIntegerMaskError(_non_integer_message(path, raw, bad))
    return values.astype(np.int64)


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


def _map(values: np.ndarray, spec: RemapSpec, skip: np.ndarray | None = None) -> _Mapped:
    """Map raw keys to class ids; ``skip`` pixels (non-integer float values) are neither counted
    nor mapped: they become ``ignore_index``."""
    used = values.ravel() if skip is None else values[~skip]
    if used.size and used.min() < 0:
        raise MaskError(f"negative mask values {sorted(set(used[used < 0].tolist()))}")
    if skip is None and used.dtype.kind in "ui" and (not used.size or used.max() < BINCOUNT_LIMIT):
        return _map_counted(values, spec)
    keys, inverse, counts = np.unique(used, return_inverse=True, return_counts=True)
    classes = _classes(keys, spec)
    missing = classes == UNMAPPED
    classes[missing] = spec.ignore_index
    if spec.counts_only:  # the raw keys are the result (non-integer float pixels 0)
        return _Mapped(values, keys, counts, [])
    mapped = classes[inverse.ravel()].astype(np.uint8)
    if skip is None:
        out = mapped.reshape(values.shape)
    else:
        out = np.full(values.shape, spec.ignore_index, dtype=np.uint8)
        out[~skip] = mapped
    return _Mapped(out, keys, counts, spec.describe(keys[missing]))


def _classes(keys: np.ndarray, spec: RemapSpec) -> np.ndarray:
    """The class id of each key (:data:`UNMAPPED` for keys outside the table)."""
    classes = spec.lookup(keys)
    high = classes[(classes > 255) & (classes != UNMAPPED)]
    if high.size and not spec.counts_only:
        raise MaskError(f"class ids above 255 {sorted(set(high.tolist()))}")
    return classes


def _map_counted(values: np.ndarray, spec: RemapSpec) -> _Mapped:
    """:func:`_map` for integer keys below :data:`BINCOUNT_LIMIT`: counted by np.bincount and
    mapped through a lookup table, in memory of the size of the uint8 output."""
    counts = np.bincount(values.ravel())
    keys = np.flatnonzero(counts)
    if spec.counts_only:  # the raw keys are the result, not copied
        return _Mapped(values, keys, counts[keys], [])
    classes = _classes(keys, spec)
    missing = classes == UNMAPPED
    classes[missing] = spec.ignore_index
    table = np.zeros(len(counts), dtype=np.uint8)
    table[keys] = classes.astype(np.uint8)
    return _Mapped(table[values], keys, counts[keys], spec.describe(keys[missing]))


def _unmapped_message(source: str, found: list, spec: RemapSpec) -> str:
    kind = "colours" if spec.by_color else "values"
    return (
        f"{source}: mask {kind} {found} are not in {spec.known()} "
        "(add them to the table, set remap.ignore_value, or remap.unmapped: ignore/quarantine)"
    )


def _size_problem(info: ImageInfo, shape: tuple[int, ...], mask_orientation: int) -> str:
    """Why a mask and its image differ in size, naming an EXIF orientation that caused it."""
    height, width = shape
    text = f"mask {width}x{height} and image {info.width}x{info.height} differ in size"
    if info.swaps_axes and info.stored_size == (width, height):
        verb = "rotates" if info.orientation in (6, 8) else "transposes"
        return text + (
            f" (the image's EXIF orientation {info.orientation} {verb} it; its stored size "
            f"{width}x{height} matches the mask: fix the orientation tag or rotate the mask)"
        )
    if mask_orientation in SWAPS_AXES and (height, width) == (info.width, info.height):
        return text + (
            f" (the mask's EXIF orientation {mask_orientation} rotates it; its stored size "
            f"{height}x{width} matches the image: fix the mask's orientation tag)"
        )
    return text


def _value_problems(mask: str, raw: np.ndarray, skip, mapped: _Mapped, spec: RemapSpec) -> list:
    """Messages for values the table cannot map: non-integer float values, unmapped values."""
    messages = [] if skip is None else [_non_integer_message(mask, raw, skip)]
    if mapped.missing:
        hint = "" if spec.by_color else _mode_hint(mask, mapped.missing)
        messages.append(_unmapped_message(mask, mapped.missing, spec) + hint)
    return messages


def _mode_hint(mask: str, missing: list) -> str:
    """What the values of a palette, 1-bit or high-bit-depth mask are, for a message about
    unmapped values (a viewer shows a palette mask's colours, not its values)."""
    with Image.open(mask) as img:
        mode, palette = img.mode, img.getpalette() if img.mode in ("P", "PA") else None
    if palette is not None:
        shown = [f"{v}: {palette[3 * v : 3 * v + 3]}" for v in missing[:SHOWN_VALUES]]
        return (
            f"; a palette mask: the values are palette indices, not colours (index: colour "
            f"{', '.join(shown)}); to map its colours use remap.colors"
        )
    if mode == "1":
        return "; a 1-bit mask: its pixels read as 0 and 255"
    if mode in HIGH_BIT_MODES:
        return f"; a {mode} mask: values are read as stored, not scaled to 8 bits"
    return ""


def check_pair(
    row: dict, spec: RemapSpec, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> tuple[dict, np.ndarray | None]:
    """Decode one image and its mask completely and remap the mask.

    Returns ``(result, class_id_mask)`` (with a counting spec, :attr:`RemapSpec.counts_only`,
    the raw keys instead: values, or packed colours). ``result`` is ``row`` plus ``image_format``,
    ``image_mode``, ``width``, ``height``, ``value_counts`` (raw value or (r, g, b) -> pixels),
    ``class_counts`` (class id -> pixels), ``content`` (the image's
    :func:`~segpipe.data.images.content_digest`) and ``notes`` ((level, message) log lines); a pair
    that cannot be used has ``problem`` and ``problem_file`` instead of a mask, and ``fatal``
    when it must stop the run (unmapped or non-integer values with ``unmapped='error'``). An
    image or mask of more than ``max_pixels`` pixels is not decoded: the pair is quarantined.
    """
    result: dict[str, Any] = {**row, "notes": [], "fatal": False}
    image, mask = row["image"], row["raw_mask"]

    def problem(file: str, text: str, fatal: bool = False):
        return {**result, "problem": text, "problem_file": file, "fatal": fatal}, None

    try:
        info = inspect_image(image, max_pixels)
    except ImageTooLargeError as exc:
        return problem(image, f"image too large: {exc}")
    except Exception as exc:  # Pillow raises many types for corrupt files
        return problem(image, f"unreadable image ({type(exc).__name__}: {exc})")
    result.update(
        image_format=info.format,
        image_mode=info.mode,
        width=info.width,
        height=info.height,
        content=info.content,
    )
    result["notes"] += [(level, f"{image}: {text}") for level, text in info.notes]
    try:
        raw, mask_orientation = read_raw_mask(mask, colors=spec.by_color, max_pixels=max_pixels)
        values, skip = split_non_integer(raw)
        mapped = _map(values, spec, skip)
    except ImageTooLargeError as exc:
        return problem(mask, f"mask too large: {exc}")
    except MaskError as exc:
        return problem(mask, str(exc).removeprefix(f"{mask}: "))
    except Exception as exc:
        return problem(mask, f"unreadable mask ({type(exc).__name__}: {exc})")
    if values.shape != (info.height, info.width):
        return problem(mask, _size_problem(info, values.shape, mask_orientation))
    note = orientation_note(mask_orientation)
    if note:
        result["notes"].append((note[0], f"{mask}: mask {note[1]}"))
    described = spec.describe(mapped.keys)
    result["value_counts"] = {
        (tuple(k) if spec.by_color else k): c
        for k, c in zip(described, mapped.counts.tolist(), strict=True)
    }
    for message in _value_problems(mask, raw, skip, mapped, spec):
        if spec.unmapped in ("error", "quarantine"):
            # 'error' stops the run (remap) or is a problem (verify); the text names no file,
            # which problem_file does.
            return problem(mask, message.removeprefix(f"{mask}: "), spec.unmapped == "error")
        result["notes"].append((logging.WARNING, message + ": marked as ignored"))
    if spec.counts_only:  # the keys are the "classes": no bincount over packed colours
        result["class_counts"] = dict(
            zip(mapped.keys.tolist(), mapped.counts.tolist(), strict=True)
        )
    else:
        class_counts = np.bincount(mapped.out.ravel(), minlength=256)
        classes = np.flatnonzero(class_counts)
        result["class_counts"] = dict(
            zip(classes.tolist(), class_counts[classes].tolist(), strict=True)
        )
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


def _remap_one(args: tuple[dict, RemapSpec, str | None, int | None]) -> dict:
    row, spec, out_dir, max_pixels = args
    result, out = check_pair(row, spec, max_pixels)
    if out is not None and out_dir is not None:
        mask_path = os.path.join(out_dir, f"{row['id']}.png")
        Image.fromarray(out, mode="L").save(mask_path, format="PNG")
        result["mask"] = mask_path
    return result


def check_pairs(
    frame: pd.DataFrame,
    spec: RemapSpec,
    out_dir: str | Path | None = None,
    threads: int = 1,
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> list[dict]:
    """:func:`check_pair` for every row, in ``threads`` processes; masks written to ``out_dir``."""
    out = None if out_dir is None else str(out_dir)
    jobs = [(row, spec, out, max_pixels) for row in frame.to_dict("records")]
    return map_pairs(_remap_one, jobs, threads, "check pairs")


def map_pairs(function, jobs: list, threads: int, desc: str, chunksize: int = 16) -> list:
    """``function`` (a module-level function, picklable) over ``jobs`` in order, in ``threads``
    processes (in this one for 1 or a single job), with progress lines."""
    if threads <= 1 or len(jobs) < 2:
        return list(progress(map(function, jobs), desc=desc, total=len(jobs)))
    with ProcessPoolExecutor(
        max_workers=threads, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        mapped = pool.map(function, jobs, chunksize=chunksize)
        return list(progress(mapped, desc=desc, total=len(jobs)))


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
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> pd.DataFrame:
    """Index ``dataset_dir``, check and remap every pair, and write masks, an index CSV and a
    quarantine CSV (file, problem).

    The masks directory is written atomically (temp dir, then rename). Pairs that cannot be used go
    to the quarantine CSV (an image or mask of more than ``max_image_pixels`` pixels too, undecoded);
    identical images are logged (:func:`~segpipe.data.summary.duplicate_warnings`) and share
    the index's ``content``, which keeps them in one split. If more than
    ``max_quarantine_fraction`` of the pairs are lost, or any
    mask has unmapped or non-integer values with ``unmapped='error'``, it raises (the quarantine CSV is still
    written, so the report of a later fixed run and the user see every problem).
    """
    # The outputs' folder is this step's alone: clear what a killed earlier run left there.
    remove_stale_temporaries(Path(masks_out).parent)
    with logged_warnings() as index_warnings:  # counted in the summary's warnings
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
    check_split_lists(index_quarantine)  # a listed id with no pair: the split is not to be trusted
    if frame.empty:
        _fail_without_pairs(dataset_dir, layout, index_quarantine, quarantine_out)
    logger.info("checking and remapping %d pairs with %d processes", len(frame), threads)
    masks_out = Path(masks_out)
    with atomic_dir(masks_out) as tmp:
        results = check_pairs(frame, spec, tmp, max(1, threads), max_image_pixels)
        quarantine = quarantine_rows(index_quarantine, results)
        log_results(results, quarantine)
        for message in duplicate_warnings(results):
            logger.warning(message)
        write_csv(quarantine_out, pd.DataFrame(quarantine, columns=["file", "problem"]))
        _check_usable(
            frame,
            index_quarantine,
            results,
            quarantine,
            dataset_dir=dataset_dir,
            quarantine_out=quarantine_out,
            max_quarantine_fraction=max_quarantine_fraction,
        )
    summary = summarize(
        frame,
        index_quarantine,
        results,
        spec,
        class_names=class_names,
        index_warnings=index_warnings,
    )
    logger.info("dataset summary:\n%s", format_summary(summary))
    index = _index_frame(results, masks_out, ignore_index)
    write_csv(index_out, index)
    logger.info(
        "remapped %d masks into %s (%d files quarantined)", len(index), masks_out, len(quarantine)
    )
    return index


def _fail_without_pairs(
    dataset_dir: str | Path,
    layout: str,
    index_quarantine: list[tuple[str, str]],
    quarantine_out: str | Path,
) -> None:
    """No pair found: write the quarantine CSV (what indexing found instead) and raise."""
    for file, problem in index_quarantine[:20]:
        logger.warning("quarantined %s: %s", file, problem)
    write_csv(quarantine_out, pd.DataFrame(index_quarantine, columns=["file", "problem"]))
    raise DatasetError(
        f"{dataset_dir}: no image/mask pairs found (layout '{layout}'); "
        f"{len(index_quarantine)} files quarantined, see {quarantine_out}"
    )


def _check_usable(
    frame: pd.DataFrame,
    index_quarantine: list[tuple[str, str]],
    results: list[dict],
    quarantine: list[tuple[str, str]],
    *,
    dataset_dir: str | Path,
    quarantine_out: str | Path,
    max_quarantine_fraction: float,
) -> None:
    """Raise when a mask must stop the run (unmapped or non-integer values with
    ``unmapped='error'``) or more than ``max_quarantine_fraction`` of the pairs are lost."""
    fatal = [f"{r['problem_file']}: {r['problem']}" for r in results if r.get("fatal")]
    if fatal:
        raise UnmappedValuesError(
            f"{len(fatal)} mask(s) hold values outside the remap table or non-integer "
            "values:\n  " + "\n  ".join(fatal[:10])
        )
    lost, total = lost_fraction(frame, index_quarantine, results)
    if lost > max_quarantine_fraction * total:
        problems = "\n  ".join(f"{f}: {p}" for f, p in quarantine[:5])
        raise DatasetError(
            f"{lost} of {total} pairs in {dataset_dir} are unusable (more than "
            f"remap.max_quarantine_fraction={max_quarantine_fraction}); see {quarantine_out}. "
            f"First problems:\n  {problems}"
        )


def _index_frame(results: list[dict], masks_out: Path, ignore_index: int) -> pd.DataFrame:
    """The index of the usable pairs (:data:`INDEX_COLUMNS`), their masks in ``masks_out``."""
    good = [r for r in results if "problem" not in r]
    index = pd.DataFrame(good)
    index["mask"] = [str(masks_out / Path(p).name) for p in index["mask"]]
    index["classes"] = [
        " ".join(str(c) for c in sorted(r["class_counts"]) if c != ignore_index) for r in good
    ]
    return index[INDEX_COLUMNS]
