"""Reading images of any real format as 8-bit RGB, and saying what a file really holds.

Kept free of torch so the remap step and ``segpipe verify`` start quickly; :mod:`segpipe.data`
re-exports :func:`load_rgb`.

Files are read by their content, never by their extension: a ``.jpg`` that is really a PNG with
alpha or a palette GIF (both in the real Oxford-IIIT Pet archive) is read as what it is.
Conversions to RGB:

- RGB: unchanged; greyscale (L) and 1-bit: the value in all three channels;
- palette (P): the palette colours; with transparency, as RGBA below;
- RGBA, LA, PA: the alpha channel is dropped (the stored colours are kept, not blended);
- CMYK: Pillow's conversion, R = (255 - C)(255 - K)/255 (Adobe-inverted JPEGs are handled);
- 16-bit, 32-bit integer and float greyscale (I;16, I, F): scaled by the image's own maximum to
  0..255 (not clipped, so 12-bit data does not turn white);
- multi-frame files (animated GIF, multi-page TIFF): the first frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

EXPECTED_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".ppm": "PPM",
}
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ALPHA_MODES or (img.mode == "P" and "transparency" in img.info)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a loaded Pillow image of any mode to 8-bit RGB (see the module docstring)."""
    if img.mode in HIGH_BIT_MODES:
        arr = np.asarray(img, dtype=np.float32)
        peak = float(arr.max()) if arr.size else 0.0
        peak = peak if peak > 0 else 1.0
        img = Image.fromarray(np.clip(arr / peak * 255.0, 0, 255).astype(np.uint8), mode="L")
    if _has_alpha(img):
        img = img.convert("RGBA")
    return img.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """Open any image Pillow reads as 8-bit RGB, whatever its real format or mode."""
    with Image.open(path) as img:
        img.load()
        return to_rgb(img)


@dataclass
class ImageInfo:
    """What an image file really is, and what reading it as RGB did to it."""

    format: str  # Pillow's format name from the file's content, e.g. "JPEG", "PNG", "GIF"
    mode: str  # Pillow mode as stored, e.g. "RGB", "L", "P", "RGBA", "CMYK", "I;16"
    width: int
    height: int
    # (logging level, text) for each conversion or oddity worth a log line.
    notes: list[tuple[int, str]] = field(default_factory=list)


def inspect_image(path: str | Path) -> ImageInfo:
    """Decode ``path`` completely and convert it to RGB, as training will; describe what happened.

    Raises whatever Pillow raises for an unreadable, truncated or corrupt file (callers catch
    ``Exception`` and quarantine the file).
    """
    path = Path(path)
    with Image.open(path) as img:
        fmt = img.format or "unknown"
        mode = img.mode
        frames = getattr(img, "n_frames", 1)
        img.load()  # full decode: truncated and corrupt files fail here, not in training
        peak = None
        if mode in HIGH_BIT_MODES:
            peak = float(np.asarray(img, dtype=np.float32).max())
        rgb = to_rgb(img)
        width, height = rgb.size
    notes: list[tuple[int, str]] = []
    expected = EXPECTED_FORMATS.get(path.suffix.lower())
    if expected and fmt != expected:
        notes.append(
            (logging.WARNING, f"is really {fmt} (mode {mode}), named {path.suffix}: read as {fmt}")
        )
    if mode == "RGB":
        pass
    elif mode in ("L", "1"):
        notes.append((logging.INFO, f"greyscale ({mode}): value copied to R, G and B"))
    elif mode == "P" and not _has_alpha(img):
        notes.append((logging.INFO, "palette (P): palette colours used"))
    elif mode in HIGH_BIT_MODES:
        notes.append(
            (
                logging.WARNING,
                f"high bit depth ({mode}, maximum {peak:g}): scaled by its maximum to 8 bits",
            )
        )
    elif _has_alpha(img):
        notes.append((logging.WARNING, f"alpha channel ({mode}) dropped, colours kept"))
    elif mode == "CMYK":
        notes.append((logging.WARNING, "CMYK: converted to RGB"))
    else:
        notes.append((logging.INFO, f"mode {mode}: converted to RGB"))
    if frames > 1:
        notes.append((logging.WARNING, f"{frames} frames: the first frame is used"))
    return ImageInfo(fmt, mode, width, height, notes)
