"""The inference engine with stand-in scorers: flip views and their average, tiles that cover
an image once or more, sliding windows that blend to the score of a position-wise scorer, and
images smaller than a tile."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segpipe.inference.engine import (
    flip_views,
    normalized,
    predict_sliding,
    split_scores,
    tile_starts,
    tile_weight,
    with_and_without_tta,
    with_tta,
)


def test_flip_views_are_every_combination_once() -> None:
    assert flip_views([]) == [()]
    assert flip_views(["hflip"]) == [(), (3,)]
    assert flip_views(["hflip", "vflip", "hflip"]) == [(), (3,), (2,), (3, 2)]
    with pytest.raises(ValueError, match=r"unknown flips \['rot90'\]; use \['hflip', 'vflip'\]"):
        flip_views(["rot90", "hflip"])


def test_flipped_views_are_flipped_back_before_averaging() -> None:
    def left_half(x: torch.Tensor) -> torch.Tensor:  # scores depend on where a pixel is
        p = torch.zeros(x.shape[0], 2, *x.shape[2:])
        p[:, 0, :, : x.shape[3] // 2] = 1
        p[:, 1] = 1 - p[:, 0]
        return p

    x = torch.rand(1, 3, 4, 6)
    assert with_tta(left_half, []) is left_half
    averaged = with_tta(left_half, ["hflip"])(x)
    torch.testing.assert_close(averaged, torch.full((1, 2, 4, 6), 0.5))
    vertical = with_tta(left_half, ["vflip"])(x)  # a vertical flip keeps the halves
    torch.testing.assert_close(vertical, left_half(x))


@pytest.mark.parametrize("length, tile, stride", [(8, 8, 4), (9, 8, 4), (20, 8, 3), (64, 32, 32)])
def test_tiles_cover_the_axis_and_end_flush(length, tile, stride) -> None:
    starts = tile_starts(length, tile, stride)
    assert starts[0] == 0 and starts[-1] == length - tile
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:], strict=False))
    covered = np.zeros(length, bool)
    for start in starts:
        covered[start : start + tile] = True
    assert covered.all()


def test_tile_weight_peaks_in_the_middle_and_never_reaches_zero() -> None:
    w = tile_weight(16)
    assert w.shape == (16, 16) and float(w.max()) == pytest.approx(1.0)
    assert float(w.min()) >= 1e-3 and w[8, 8] > w[0, 0]


def _pixelwise(x: torch.Tensor) -> torch.Tensor:
    """Class probabilities that depend on each pixel alone (the red channel)."""
    p = torch.sigmoid(x[:, :1])
    return torch.cat([p, 1 - p], 1)


@pytest.mark.parametrize("size", [(40, 56), (20, 12), (32, 32)])
@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_sliding_windows_blend_to_the_whole_image_score(size, overlap) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    whole = _pixelwise(normalized(rgb))[0]
    tiled = predict_sliding(rgb, _pixelwise, 32, overlap=overlap, batch_size=3)
    assert tiled.shape == (2, *size)
    torch.testing.assert_close(tiled, whole)


@pytest.mark.parametrize("overlap", [-0.1, 1.0])
def test_an_overlap_outside_0_to_1_is_refused(overlap) -> None:
    with pytest.raises(ValueError, match="overlap must be in"):
        predict_sliding(np.zeros((8, 8, 3), np.uint8), _pixelwise, 8, overlap=overlap)


def test_flips_and_plain_come_from_one_forward_pass_per_view() -> None:
    calls = []

    def counted(x: torch.Tensor) -> torch.Tensor:  # scores depend on where a pixel is
        calls.append(x.shape)
        p = torch.zeros(x.shape[0], 2, *x.shape[2:])
        p[:, 0] = torch.linspace(0, 1, x.shape[3])
        p[:, 1] = 1 - p[:, 0]
        return p * x[:, :1].sigmoid() + (1 - x[:, :1].sigmoid()) / 2

    x = torch.rand(2, 3, 4, 6)
    for flips in (["hflip"], ["hflip", "vflip"]):
        calls.clear()
        both = with_and_without_tta(counted, flips)(x)
        assert len(calls) == len(flip_views(flips))  # the unflipped view is one of them
        averaged, plain = split_scores(both[0], 2)
        assert torch.equal(averaged, with_tta(counted, flips)(x)[0])  # bit for bit
        assert torch.equal(plain, counted(x)[0])
    assert len(split_scores(torch.zeros(3, 4, 4), 1)) == 1
