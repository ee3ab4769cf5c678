"""What the run report (:mod:`segpipe.reporting.run_report`) and the comparison
(:mod:`segpipe.reporting.comparison`) both use to write a self-contained HTML page: images as
inline ``data:`` URIs, side-by-side panel sheets, the number formats of the tables, and the
Jinja environment of ``templates/`` with those formats as filters."""

from __future__ import annotations

import base64
import io
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import numpy as np
from PIL import Image

GALLERY_MAX_HEIGHT = 256
_PANEL_GAP = 4


def panel_sheet(image: np.ndarray, panels: Sequence[np.ndarray]) -> Image.Image:
    """An RGB ``image`` and RGB ``panels`` of its height and width side by side, white gaps
    between, scaled to at most GALLERY_MAX_HEIGHT px high.

    The image is scaled smoothly, the panels (colourised masks, error maps) by nearest neighbour
    so that a mask keeps its exact class colours.
    """
    height, width = image.shape[:2]
    scale = min(1.0, GALLERY_MAX_HEIGHT / height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    scaled = [Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)] + [
        Image.fromarray(panel).resize(size, Image.Resampling.NEAREST) for panel in panels
    ]
    count = len(scaled)
    sheet = Image.new("RGB", (count * size[0] + (count - 1) * _PANEL_GAP, size[1]), "white")
    for i, panel in enumerate(scaled):
        sheet.paste(panel, (i * (size[0] + _PANEL_GAP), 0))
    return sheet


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as a PNG, at zlib's default level: ``optimize`` took the report's
    galleries twice the time for files a few percent smaller."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes, kind: str = "png") -> str:
    """A ``data:`` URI of PNG (or ``kind``: jpeg) bytes, to inline an image in a self-contained
    HTML file."""
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def is_missing(value: Any) -> bool:
    """Whether ``value`` is None or a NaN number, both shown as "n/a"."""
    return value is None or (isinstance(value, numbers.Real) and math.isnan(value))


def format_number(value: Any, spec: str = ".3f") -> str:
    """Jinja filter: ``value`` formatted with ``spec``, or "n/a" for None/NaN."""
    return "n/a" if is_missing(value) else format(value, spec)


def format_mean_std(value: Mapping[str, Any] | None, spec: str = ".3f") -> str:
    """Jinja filter: a ``{"mean", "std"}`` pair as "mean ± std", the mean alone without a std,
    or "n/a" without a mean."""
    mean = None if value is None else value.get("mean")
    if value is None or is_missing(mean):
        return "n/a"
    std = value.get("std")
    return format(mean, spec) if is_missing(std) else f"{mean:{spec}} ± {std:{spec}}"


def format_duration(seconds: Any) -> str:
    """Jinja filter: seconds as H:MM:SS, or "n/a" for None/NaN."""
    if is_missing(seconds):
        return "n/a"
    minutes, secs = divmod(round(float(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def template_environment() -> jinja2.Environment:
    """The Jinja environment of the package's HTML templates, with the ``num``, ``duration``
    and ``pm`` (mean ± std) filters; autoescaping on, and an undefined name is an error rather
    than an empty string."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("segpipe.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    env.filters["duration"] = format_duration
    env.filters["pm"] = format_mean_std
    return env
