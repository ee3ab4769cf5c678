"""The one writer of a prediction (segpipe.inference.writer): mask, overlay and probabilities when
asked, for nested, dotted, spaced and Unicode names; a name outside the folder refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segpipe.data import predictions
from segpipe.data.colors import overlay
from segpipe.data.masks import load_mask
from segpipe.inference.writer import write_prediction

NAMES = ["x", "a/x", "a/b/x", "x.tar", "with space", "ünïcødé/名前", "dots.in.dir/x.y"]
CLASSES = ["background", "cat", "dog"]


def probabilities(height: int = 32, width: int = 48) -> torch.Tensor:
    """Class probabilities whose argmax is a band of 16 columns per class (smooth enough for
    a JPEG overlay to stay close to its colours)."""
    ids = (torch.arange(width) // 16 % len(CLASSES)).expand(height, width)
    logits = torch.nn.functional.one_hot(ids, len(CLASSES)).permute(2, 0, 1).float() * 3
    return logits.softmax(0)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("keep", [False, True])
def test_write_prediction_writes_mask_overlay_and_probabilities_when_asked(tmp_path, name, keep):
    p = probabilities()
    rgb = np.full((32, 48, 3), 120, dtype=np.uint8)
    mask_path = write_prediction(
        tmp_path, name, rgb, p, CLASSES, keep_probabilities=keep, overlay_alpha=0.4
    )
    expected = p.argmax(0).numpy().astype(np.uint8)
    assert mask_path == predictions.mask_path(tmp_path, name)
    assert np.array_equal(load_mask(mask_path), expected)
    with Image.open(predictions.overlay_path(tmp_path, name)) as shaded:
        assert shaded.format == "JPEG"
        got = np.asarray(shaded.convert("RGB"), dtype=int)
    want = overlay(rgb, expected, len(CLASSES), 0.4).astype(int)
    assert np.abs(got - want).mean() < 4  # JPEG, quality 90
    npz = predictions.probabilities_path(tmp_path, name)
    assert npz.exists() == keep
    if keep:
        with np.load(npz) as saved:
            assert saved["classes"].tolist() == CLASSES
            assert saved["probabilities"].dtype == np.uint8
            assert np.abs(saved["probabilities"] / 255 - p.numpy()).max() <= 0.5 / 255 + 1e-6
    left = [p.name for p in tmp_path.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert not left


def test_write_prediction_refuses_a_name_outside_the_folder(tmp_path):
    rgb = np.zeros((32, 48, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="not a relative path"):
        write_prediction(tmp_path / "out", "../escaped", rgb, probabilities(), CLASSES)
    assert not list(tmp_path.rglob("*.png"))


@pytest.mark.parametrize("name", ["x", "a/b/x"])
def test_without_an_image_only_the_mask_is_written(tmp_path, name):
    mask_path = write_prediction(tmp_path, name, None, probabilities(), CLASSES)
    assert np.array_equal(load_mask(mask_path), probabilities().argmax(0).numpy())
    assert not (tmp_path / predictions.OVERLAYS).exists()
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()] == [
        mask_path.relative_to(tmp_path)
    ]
