"""Tests for segpipe.reporting.html, the page-writing helpers of the run report and the
comparison."""

from __future__ import annotations

import base64
import io
import math

import jinja2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segpipe.reporting import html

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _solid(height: int, width: int, color: tuple[int, int, int]) -> np.ndarray:
    return np.full((height, width, 3), color, dtype=np.uint8)


def test_png_bytes_round_trip_the_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)

    data = html.png_bytes(Image.fromarray(pixels))

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        assert np.array_equal(np.asarray(image), pixels)


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_data_uri_holds_the_bytes_in_base64(kind):
    data = bytes(range(256))

    uri = html.data_uri(data, kind)

    prefix = f"data:image/{kind};base64,"
    assert uri.startswith(prefix)
    assert base64.b64decode(uri.removeprefix(prefix), validate=True) == data


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        (None, True),
        (float("nan"), True),
        (np.float32("nan"), True),
        (np.float64("nan"), True),
        (0, False),
        (0.0, False),
        (np.int64(0), False),
        (float("inf"), False),
        ("nan", False),  # a string, e.g. an image id, is a value
        ("", False),
    ],
)
def test_is_missing_is_none_or_a_nan_number(value, missing):
    assert html.is_missing(value) is missing


@pytest.mark.parametrize(
    ("value", "spec", "text"),
    [
        (0.71234, ".3f", "0.712"),
        (np.float32(0.5), ".3f", "0.500"),
        (1234567, ",d", "1,234,567"),
        (0.01234, "+.4f", "+0.0123"),
        (None, ".3f", "n/a"),
        (float("nan"), ",d", "n/a"),
    ],
)
def test_format_number(value, spec, text):
    assert html.format_number(value, spec) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"mean": 0.5, "std": 0.25}, "0.500 ± 0.250"),
        ({"mean": 0.5, "std": None}, "0.500"),
        ({"mean": 0.5, "std": float("nan")}, "0.500"),
        ({"mean": 0.5}, "0.500"),
        ({"mean": None, "std": 0.1}, "n/a"),
        ({"mean": float("nan")}, "n/a"),
        ({}, "n/a"),
        (None, "n/a"),
    ],
)
def test_format_mean_std(value, text):
    assert html.format_mean_std(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0:00:00"), (59.4, "0:00:59"), (59.6, "0:01:00"), (3723.5, "1:02:04"), (None, "n/a")],
)
def test_format_duration(seconds, text):
    assert html.format_duration(seconds) == text


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_format_duration_reads_back_as_the_rounded_seconds(seconds):
    hours, minutes, secs = html.format_duration(seconds).split(":")

    assert len(minutes) == len(secs) == 2 and int(minutes) < 60 and int(secs) < 60
    assert int(hours) * 3600 + int(minutes) * 60 + int(secs) == round(seconds)


def test_template_environment_has_the_filters_escapes_and_refuses_undefined_names():
    env = html.template_environment()
    template = env.from_string(
        "{{ a | num }} {{ b | duration }} {{ c | pm }} {{ d | num(',d') }} {{ name }}"
    )

    text = template.render(a=math.nan, b=61, c={"mean": 1, "std": 0.5}, d=1000, name="<b>&</b>")

    assert text == "n/a 0:01:01 1.000 ± 0.500 1,000 &lt;b&gt;&amp;&lt;/b&gt;"
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ nowhere }}").render()


def test_template_environment_loads_the_package_templates():
    env = html.template_environment()

    assert {"report.html.j2", "compare.html.j2"} <= set(env.list_templates())


def test_panel_sheet_puts_the_panels_beside_the_image_with_gaps():
    image, panel = _solid(10, 6, RED), _solid(10, 6, BLUE)

    sheet = np.asarray(html.panel_sheet(image, [panel, panel]))

    gap = html._PANEL_GAP
    assert sheet.shape == (10, 3 * 6 + 2 * gap, 3)
    assert (sheet[:, :6] == RED).all()
    assert (sheet[:, 6 : 6 + gap] == 255).all()  # white gap
    assert (sheet[:, 6 + gap : 12 + gap] == BLUE).all()


def test_panel_sheet_scales_down_tall_images_and_keeps_mask_colours():
    height = 2 * html.GALLERY_MAX_HEIGHT
    stripes = np.zeros((height, 8, 3), dtype=np.uint8)
    stripes[:, ::2] = RED  # one-pixel stripes: a smooth resize would blend them
    stripes[:, 1::2] = BLUE

    sheet = np.asarray(html.panel_sheet(_solid(height, 8, (9, 9, 9)), [stripes]))

    assert sheet.shape[0] == html.GALLERY_MAX_HEIGHT
    panel = sheet[:, 4 + html._PANEL_GAP :].reshape(-1, 3)
    assert {tuple(int(c) for c in p) for p in panel} <= {RED, BLUE}


def test_panel_sheet_keeps_small_images_at_their_size():
    sheet = html.panel_sheet(_solid(1, 1, RED), [])

    assert sheet.size == (1, 1)
