"""Class colours shared by prediction overlays and the reports: palette, colourised masks,
overlays and the class legend."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Distinct colours first (tab10-like), then a deterministic spread for larger class counts.
_BASE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]
IGNORE_COLOR = (0, 0, 0)


def palette(num_classes: int) -> np.ndarray:
    """An (num_classes, 3) uint8 array of RGB colours, stable for a given class count."""
    colors: list[tuple[int, ...]] = list(_BASE[:num_classes])
    rng = np.random.default_rng(0)
    while len(colors) < num_classes:
        colors.append(tuple(int(v) for v in rng.integers(40, 256, size=3)))
    return np.asarray(colors, dtype=np.uint8)


def colorize(mask: np.ndarray, num_classes: int, ignore_index: int | None = 255) -> np.ndarray:
    """Map an (H, W) class-id mask to an (H, W, 3) RGB image; ignored or unknown ids are black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[:num_classes] = palette(num_classes)
    if ignore_index is not None and 0 <= ignore_index < 256:
        lut[ignore_index] = IGNORE_COLOR
    return lut[mask.astype(np.uint8)]


def overlay(
    image: np.ndarray, mask: np.ndarray, num_classes: int, alpha: float = 0.5
) -> np.ndarray:
    """Blend the colourised mask over an RGB uint8 image of the same height and width."""
    color = colorize(mask, num_classes).astype(np.float32)
    out = image.astype(np.float32) * (1 - alpha) + color * alpha
    return np.clip(out, 0, 255).astype(np.uint8)


def legend(class_names: Sequence[str]) -> list[dict[str, str]]:
    """Each class's name and its overlay colour (:func:`palette`) as ``r,g,b``, in class order:
    the legend of the reports' masks and overlays."""
    colors = palette(len(class_names))
    return [
        {"name": name, "rgb": ",".join(str(int(c)) for c in color)}
        for name, color in zip(class_names, colors, strict=True)
    ]
