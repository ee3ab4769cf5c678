"""The structures of one mask: for each raw value (or colour), its connected components' area
and shorter bounding-box side, and how thick its structures are, in pixels.

A component is a 4-connected region of one value. The *width* of a structure at a point of its
middle line (a pixel at least as far from the nearest change of value as its 8 neighbours: the
distance transform's ridge) is twice that distance plus one: a 5-pixel-wide strip gives 5 along
its middle, a membrane one pixel wide gives 1 everywhere, a network of thin membranes gives their
width along every branch (not the size of the network, which its bounding box would say). Each
middle-line pixel stands for about its width in pixels, so the widths are kept as a histogram
weighted that way (:func:`width_histogram`): its 5th percentile is the width that the thinnest
5% of a value's pixels have, what a downscale destroys first. The image's edge is no change of
value: a middle-line pixel that near the edge reaches that much less on that side (a region
cut by the edge is as wide as what is seen of it).

Components of fewer than :data:`MIN_AREA` pixels (annotation specks) are counted, not measured.
A mask holding many components of a value keeps a seeded sample of :data:`MAX_COMPONENTS` of
them, so that a fingerprint's size does not grow with noisy masks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

MIN_AREA = 10
"""Components smaller than this (pixels) are specks: counted, not measured."""
MAX_COMPONENTS = 64
"""Components of one value measured per mask at most (a seeded sample of the rest)."""
MEASURES = ("area", "short_side")
"""The measures kept per component."""


def change_map(keys: np.ndarray) -> np.ndarray:
    """Where the value changes: pixels with a 4-neighbour of another value (both sides)."""
    change = np.zeros(keys.shape, dtype=bool)
    across = keys[:, 1:] != keys[:, :-1]
    change[:, 1:] |= across
    change[:, :-1] |= across
    down = keys[1:, :] != keys[:-1, :]
    change[1:, :] |= down
    change[:-1, :] |= down
    return change


def measure_structures(
    keys: np.ndarray, *, seed: int = 0, max_components: int = MAX_COMPONENTS
) -> dict[int, dict]:
    """Raw key -> {"components": n, "specks": n, "area": [...], "short_side": [...],
    "widths": histogram} for every key of ``keys``, a 2-D array of raw values or packed colours:
    int32 arrays of the measured components, and the key's :func:`width_histogram`."""
    labels, ranges = _label_every_key(keys)
    areas = np.bincount(labels.ravel())
    boxes = ndimage.find_objects(labels)
    short = np.array([min(b.stop - b.start for b in box) for box in boxes], dtype=np.int32)
    widths = width_map(keys)
    rng = np.random.default_rng(seed)
    found = {}
    for key, first, last in ranges:  # the key's components are numbered first..last
        number = np.arange(first, last + 1)
        large = number[areas[number] >= MIN_AREA]
        measured = large
        if len(large) > max_components:
            measured = np.sort(rng.choice(large, size=max_components, replace=False))
        found[key] = {
            "components": len(number),
            "specks": len(number) - len(large),
            "area": areas[measured].astype(np.int32),
            "short_side": short[measured - 1],
            "widths": width_histogram(widths[keys == key]),
        }
    return found


def width_map(keys: np.ndarray) -> np.ndarray:
    """The width at every middle-line pixel (see the module docstring); 0 elsewhere."""
    change = change_map(keys)
    if not change.any():  # one value everywhere: as wide as the image
        return np.full(keys.shape, min(keys.shape), dtype=np.int32)
    distance = ndimage.distance_transform_edt(~change)
    ridge = distance >= ndimage.maximum_filter(distance, size=3)
    reach = np.floor(distance)
    height, width = keys.shape
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    edge = np.minimum(np.minimum(rows, height - 1 - rows), np.minimum(cols, width - 1 - cols))
    # what is seen of it: a middle line at the edge reaches one way only
    return np.where(ridge, reach + np.minimum(reach, edge) + 1, 0).astype(np.int32)


def width_histogram(widths: np.ndarray) -> np.ndarray:
    """Pixels by width: entry w is the number of middle-line pixels of width w times w (about
    the pixels of the structure they stand for)."""
    counts = np.bincount(widths.ravel())
    counts[0] = 0  # not on a middle line
    return counts * np.arange(len(counts))


def _label_every_key(keys: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """One label image numbering the components of every key in turn (1..n), and per key
    (key, its first number, its last number)."""
    labels = np.zeros(keys.shape, dtype=np.int32)
    ranges, count = [], 0
    for key in np.unique(keys).tolist():
        own, n = ndimage.label(keys == key)
        inside = own > 0
        labels[inside] = own[inside] + count
        ranges.append((int(key), count + 1, count + n))
        count += n
    return labels, ranges
