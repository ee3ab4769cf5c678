"""The structures of a mask: components' areas and shorter sides, and the pixel widths."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.planning.fingerprint import histogram_percentile
from segpipe.planning.structures import MIN_AREA, measure_structures, width_map


@pytest.mark.parametrize("width", [1, 3, 5, 9])
def test_a_strip_is_as_wide_as_it_is(width):
    mask = np.zeros((60, 80), np.uint8)
    mask[20 : 20 + width, 5:75] = 1
    found = measure_structures(mask)[1]
    assert found["components"] == 1 and found["short_side"].tolist() == [width]
    assert histogram_percentile(found["widths"], 50) == width
    assert found["area"].tolist() == [width * 70]


def test_a_network_of_thin_lines_is_thin_though_its_box_is_large():
    """Membranes: one component spanning the image, 3 px wide everywhere."""
    mask = np.ones((96, 96), np.uint8)
    for at in range(10, 96, 20):
        mask[at : at + 3, :] = 0
        mask[:, at : at + 3] = 0
    found = measure_structures(mask)[0]
    assert found["components"] == 1 and found["short_side"].tolist() == [96]
    assert histogram_percentile(found["widths"], 5) <= 3
    assert histogram_percentile(found["widths"], 50) == 3


def test_specks_are_counted_not_measured():
    mask = np.zeros((40, 40), np.uint8)
    mask[1, 1] = mask[10, 10] = 2  # two single pixels
    mask[20:30, 20:30] = 2
    found = measure_structures(mask)[2]
    assert found["components"] == 3 and found["specks"] == 2
    assert found["area"].tolist() == [100] and MIN_AREA > 1


def test_one_value_everywhere_is_as_wide_as_the_image():
    found = measure_structures(np.full((30, 50), 7, np.uint8))[7]
    assert found["short_side"].tolist() == [30]
    assert histogram_percentile(found["widths"], 50) == 30


def test_many_components_keep_a_seeded_sample():
    mask = np.zeros((200, 200), np.uint8)
    mask[::4, ::4] = 1  # 2500 single pixels: specks
    for i in range(0, 200, 10):
        mask[i : i + 4, 100:104] = 3  # 20 blocks of 16 pixels
    one = measure_structures(mask, max_components=8)[3]
    again = measure_structures(mask, max_components=8)[3]
    assert one["components"] == 20 and len(one["area"]) == 8
    assert one["area"].tolist() == again["area"].tolist()


def test_packed_colours_and_16_bit_values_are_keys_like_any_other():
    mask = np.zeros((20, 20), np.uint32)
    mask[:, 10:] = (128 << 16) | 64
    assert set(measure_structures(mask)) == {0, (128 << 16) | 64}
    values = np.full((20, 20), 300, np.uint16)
    assert set(measure_structures(values)) == {300}


def test_widths_are_measured_on_middle_lines_only():
    mask = np.zeros((21, 21), np.uint8)
    mask[5:16, 5:16] = 1
    widths = width_map(mask)
    assert widths[10, 10] == 11 and widths[5, 10] == 0  # the centre, not the edge
