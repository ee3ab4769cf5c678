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

Orientation: images are decoded the way image viewers show them. A file whose EXIF orientation
tag (0x0112; JPEGs from phones and cameras, also PNG eXIf, TIFF and WebP) says 2..8 is rotated
and/or mirrored by :func:`PIL.ImageOps.exif_transpose` wherever an image is read for
remapping, verification, preprocessing, prediction and the report (:func:`load_rgb`,
:func:`inspect_image`, :func:`oriented`), and :func:`inspect_image` notes it per file
("EXIF orientation 6: rotated as viewers show it"), a warning because a mask drawn on the stored
pixels of a square image cannot be told apart. Widths and heights everywhere (index, predictions)
are those of the viewed image. Masks are read the same way: their values as stored, but a mask
that carries an EXIF orientation itself is rotated too, so that image and mask stay aligned as an
annotation tool showing both would have drawn them. An orientation outside 1..8 is ignored (read
as stored, with a warning), as viewers do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

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


DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
"""dataset.max_image_pixels' default: Pillow's own decompression-bomb limit (a 9459x9459 image)."""
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "RGB": 3, "YCbCr": 3, "LAB": 3}
"""Bytes of a decoded pixel by mode (4 for modes not listed: RGBA, CMYK, I, F...)."""
DIGEST_ROWS = 256  # rows hashed at a time: the digest of a huge image copies no more than this


class ImageTooLargeError(ValueError):
    """An image or mask with more pixels than dataset.max_image_pixels: it is not decoded.
    ``size`` is its (width, height), ``limit`` the number of pixels it is above."""

    def __init__(self, message: str, size: tuple[int, int], limit: int):
        super().__init__(message)
        self.size, self.limit = size, limit


@contextlib.contextmanager
def open_image(path: str | Path, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """:func:`PIL.Image.open`, its size checked against ``max_pixels`` from the header before
    anything is decoded; Pillow's own decompression-bomb warning and error (at its fixed limit)
    are off while the image is open: ``max_pixels`` (dataset.max_image_pixels) is the limit.

    Raises :class:`ImageTooLargeError`, saying the size, the limit and the option to raise it.
    """
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLargeError(too_large(img, max_pixels), img.size, max_pixels)
            yield img
    finally:
        Image.MAX_IMAGE_PIXELS = old


def too_large(img: Image.Image, max_pixels: int) -> str:
    """Why an image is not decoded: its size, the limit, the memory it would take, the option."""
    width, height = img.size
    megabytes = width * height * BYTES_PER_PIXEL.get(img.mode, 4) / 1e6
    return (
        f"{width}x{height} = {width * height:,} pixels, more than dataset.max_image_pixels "
        f"({max_pixels:,}): not decoded (it would take {megabytes:,.0f} MB decoded); raise "
        "dataset.max_image_pixels (segpipe verify --max-image-pixels) to read it, or downscale it"
    )


def content_digest(img: Image.Image) -> str:
    """'sha256:<32 hex>' of a loaded image's mode, size and pixels (palette images as their
    colours), hashed a strip of rows at a time. Byte-identical files give the same digest, and so
    do the same pixels saved in another lossless format (PNG, BMP, TIFF)."""
    mode = img.mode
    if mode == "P":
        mode = "RGBA" if "transparency" in img.info else "RGB"
    width, height = img.size
    digest = hashlib.sha256(f"{mode} {width}x{height}\n".encode())
    for top in range(0, height, DIGEST_ROWS):
        strip = img.crop((0, top, width, min(height, top + DIGEST_ROWS)))
        digest.update((strip if strip.mode == mode else strip.convert(mode)).tobytes())
    return f"sha256:{digest.hexdigest()[:32]}"


ORIENTATION_TAG = 0x0112
# EXIF orientation -> what viewers do to the stored pixels (1: nothing).
ORIENTATIONS = {
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "mirrored along the main diagonal",
    6: "rotated 90° clockwise",
    7: "mirrored along the anti-diagonal",
    8: "rotated 90° counter-clockwise",
}
SWAPS_AXES = (5, 6, 7, 8)


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag of an opened image, 1 when it has none or its EXIF is unreadable
    (viewers then show the stored pixels too)."""
    try:
        return int(img.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block does not make the pixels unusable
        return 1


def oriented(img: Image.Image) -> tuple[Image.Image, int]:
    """A loaded image as viewers show it, and its EXIF orientation (the image itself when the
    orientation is 1 or not a valid 1..8 value)."""
    orientation = exif_orientation(img)
    if orientation not in ORIENTATIONS:
        return img, orientation
    return ImageOps.exif_transpose(img), orientation


def orientation_note(orientation: int) -> tuple[int, str] | None:
    """The (level, text) note for an EXIF orientation, or None for 1 (as stored)."""
    if orientation == 1:
        return None
    if orientation not in ORIENTATIONS:
        return (
            logging.WARNING,
            f"EXIF orientation {orientation} is not a valid value (1..8): read as stored",
        )
    return (
        logging.WARNING,
        f"EXIF orientation {orientation}: rotated as viewers show it ({ORIENTATIONS[orientation]})",
    )


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


def load_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Open any image Pillow reads as 8-bit RGB, whatever its real format or mode, oriented as
    viewers show it (EXIF orientation applied).

    ``max_pixels`` as in :func:`open_image`; the pipeline's steps after remap pass None: remap
    checked their images against dataset.max_image_pixels, which may be above Pillow's limit.
    """
    with open_image(path, max_pixels) as img:
        img.load()
        return to_rgb(oriented(img)[0])


@dataclass
class ImageInfo:
    """What an image file really is, and what reading it as RGB did to it."""

    format: str  # Pillow's format name from the file's content, e.g. "JPEG", "PNG", "GIF"
    mode: str  # Pillow mode as stored, e.g. "RGB", "L", "P", "RGBA", "CMYK", "I;16"
    width: int  # as viewers show it (EXIF orientation applied)
    height: int
    # (logging level, text) for each conversion or oddity worth a log line.
    notes: list[tuple[int, str]] = field(default_factory=list)
    orientation: int = 1  # EXIF orientation tag, 1 when none
    stored_size: tuple[int, int] | None = None  # (width, height) of the pixels as stored
    content: str = ""  # content_digest() of the pixels as viewers show them

    @property
    def swaps_axes(self) -> bool:
        """Whether the EXIF orientation swaps width and height (90° rotations, transposes)."""
        return self.orientation in SWAPS_AXES


def inspect_image(path: str | Path, max_pixels: int | None = None) -> ImageInfo:
    """Decode ``path`` completely, orient it as viewers show it and convert it to RGB, as training
    will; describe what happened (sizes are the viewed ones; ``stored_size`` is the stored one)
    and digest its pixels (:func:`content_digest`).

    The header is read first: an image with more than ``max_pixels`` pixels raises
    :class:`ImageTooLargeError` undecoded. The image is decoded once; an RGB image is not copied.
    Raises whatever Pillow raises for an unreadable, truncated or corrupt file (callers catch
    ``Exception`` and quarantine the file).
    """
    path = Path(path)
    with open_image(path, max_pixels) as img:
        fmt = img.format or "unknown"
        mode = img.mode
        frames = getattr(img, "n_frames", 1)
        img.load()  # full decode: truncated and corrupt files fail here, not in training
        peak = None
        if mode in HIGH_BIT_MODES:
            peak = float(np.asarray(img, dtype=np.float32).max())
        stored_size = img.size
        viewed, orientation = oriented(img)
        content = content_digest(viewed)
        if viewed.mode != "RGB":
            to_rgb(viewed)  # the conversion training makes, so that it cannot fail there
        width, height = viewed.size
        del viewed
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
    note = orientation_note(orientation)
    if note:
        notes.append(note)
    return ImageInfo(fmt, mode, width, height, notes, orientation, stored_size, content)
