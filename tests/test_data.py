"""Image reading in every mode, augmentation applied alike to image and mask, the Dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from segpipe.arrays import ArrayDataset, load_array, preprocess_split
from segpipe.data import (
    SegmentationDataset,
    build_augment,
    load_mask,
    load_rgb,
    to_model_input,
)

IGNORE = 255


def rgb_array(path) -> np.ndarray:
    img = load_rgb(path)
    assert img.mode == "RGB"
    return np.asarray(img)


def test_rgb_stays_as_is(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(rgb_array(tmp_path / "rgb.png"), pixels)


def test_greyscale(tmp_path):
    grey = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    out = rgb_array(tmp_path / "grey.png")
    assert out.shape == (2, 2, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], grey)


@pytest.mark.parametrize("transparency", [False, True])
def test_palette(tmp_path, transparency):
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    kwargs = {"transparency": 2} if transparency else {}
    img.save(tmp_path / "palette.png", **kwargs)
    assert Image.open(tmp_path / "palette.png").mode == "P"
    out = rgb_array(tmp_path / "palette.png")
    # Colours, not palette indices.
    np.testing.assert_array_equal(out[0, :2], [[255, 0, 0], [0, 255, 0]])
    if not transparency:
        np.testing.assert_array_equal(out[0, 2], [0, 0, 255])


def test_rgba_drops_alpha(tmp_path):
    rgba = np.array([[[10, 20, 30, 255], [40, 50, 60, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(rgb_array(tmp_path / "rgba.png"), rgba[..., :3])


def test_cmyk(tmp_path):
    # Cyan-free, full magenta and yellow = red.
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    assert Image.open(tmp_path / "cmyk.tif").mode == "CMYK"
    out = rgb_array(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])


def test_16_bit_is_scaled_by_its_maximum_not_clipped(tmp_path):
    depth = np.zeros((4, 5), dtype=np.uint16)
    depth[0, 0] = 4000
    depth[1, 1] = 2000
    depth[2, 2] = 1000
    Image.fromarray(depth).save(tmp_path / "depth.png")
    assert Image.open(tmp_path / "depth.png").mode.startswith("I")
    out = rgb_array(tmp_path / "depth.png")
    assert out[0, 0].tolist() == [255, 255, 255]  # the max maps to 255, not clipped 4000 -> 255
    assert abs(int(out[1, 1, 0]) - 128) <= 1  # half the max is mid-grey
    assert abs(int(out[2, 2, 0]) - 64) <= 1
    assert out[3, 3].tolist() == [0, 0, 0]
    # A clipping conversion would make 1000, 2000 and 4000 all white.
    assert len(np.unique(out[..., 0])) == 4


def test_all_black_16_bit_does_not_divide_by_zero(tmp_path):
    Image.fromarray(np.zeros((3, 3), dtype=np.uint16)).save(tmp_path / "black.png")
    assert rgb_array(tmp_path / "black.png").max() == 0


def test_png_with_a_jpg_name(tmp_path):
    pixels = np.zeros((3, 3, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = 255
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "really_png.jpg", format="PNG")
    out = rgb_array(tmp_path / "really_png.jpg")
    assert out.shape == (3, 3, 3)
    assert (out[..., 0] == 200).all()  # lossless: it was read as the PNG it is


# Augmentation ------------------------------------------------------------------------------


def asymmetric_pair(size: int = 8):
    """An image and mask whose left and right (and top and bottom) halves differ."""
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    image[0, :, : size // 4] = 255  # red stripe on the left
    image[1, : size // 4, :] = 200  # green stripe on top
    image[2] = torch.arange(size * size, dtype=torch.uint8).reshape(size, size)
    mask = torch.zeros(size, size, dtype=torch.uint8)
    mask[:, : size // 4] = 1
    mask[: size // 4, :] = 2
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def test_no_augmentation_is_none():
    assert build_augment() is None


def test_hflip_flips_image_and_mask_identically():
    image, mask = asymmetric_pair()
    out_image, out_mask = build_augment(hflip=1.0)(image, mask)
    assert torch.equal(out_image, image.flip(-1))
    assert torch.equal(out_mask, mask.flip(-1))
    assert out_mask[0, -1] == 2 and out_mask[-1, -1] == 1  # the left stripe is now on the right
    assert isinstance(out_mask, tv_tensors.Mask)


def test_vflip_flips_image_and_mask_identically():
    image, mask = asymmetric_pair()
    out_image, out_mask = build_augment(vflip=1.0)(image, mask)
    assert torch.equal(out_image, image.flip(-2))
    assert torch.equal(out_mask, mask.flip(-2))


def test_random_flip_keeps_image_and_mask_together():
    image, mask = asymmetric_pair()
    augment = build_augment(hflip=0.5)
    torch.manual_seed(0)
    flipped = 0
    for _ in range(20):
        out_image, out_mask = augment(image, mask)
        if torch.equal(out_image, image):
            assert torch.equal(out_mask, mask)
        else:
            assert torch.equal(out_image, image.flip(-1))
            assert torch.equal(out_mask, mask.flip(-1))
            flipped += 1
    assert 0 < flipped < 20


def test_affine_fills_the_mask_border_with_ignore_index():
    size = 32
    image = tv_tensors.Image(torch.full((3, size, size), 180, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(size, size, dtype=torch.uint8))
    augment = build_augment(rotate=60, translate=0.2, ignore_index=IGNORE)
    torch.manual_seed(1)
    for _ in range(5):
        out_image, out_mask = augment(image, mask)
        values = set(out_mask.unique().tolist())
        assert values <= {1, IGNORE}  # nearest neighbour: no blended class ids
        assert IGNORE in values  # the corners moved in from outside
        outside = out_mask == IGNORE
        assert (out_image[:, outside] == 0).all()  # the image is filled with 0 there
        assert (out_image[:, ~outside] > 0).any()


def test_color_jitter_changes_the_image_only():
    image, mask = asymmetric_pair(16)
    torch.manual_seed(0)
    out_image, out_mask = build_augment(color_jitter=0.8)(image, mask)
    assert torch.equal(out_mask, mask)
    assert not torch.equal(out_image, image)


# Dataset -----------------------------------------------------------------------------------


@pytest.fixture
def manifest(tmp_path) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 50), (37, 29)]):
        image_path = tmp_path / f"img{i}.jpg"
        mask_path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(image_path)
        mask = rng.integers(0, 3, size=(h, w), dtype=np.uint8)
        mask[:3] = IGNORE
        Image.fromarray(mask, mode="L").save(mask_path)
        rows.append(
            {
                "id": f"img{i}",
                "image": str(image_path),
                "mask": str(mask_path),
                "group": "g",
                "height": h,
                "width": w,
            }
        )
    return pd.DataFrame(rows)


def test_dataset_items(manifest):
    dataset = SegmentationDataset(manifest, 32)
    assert len(dataset) == 2
    for i in range(2):
        image, mask = dataset[i]
        assert image.shape == (3, 32, 32)
        assert image.dtype == torch.float32
        assert mask.shape == (32, 32)
        assert mask.dtype == torch.int64
        # Nearest-neighbour resizing keeps only the ids that were there.
        original = set(np.unique(load_mask(manifest["mask"][i])).tolist())
        assert set(mask.unique().tolist()) <= original
        assert IGNORE in mask.unique().tolist()
        # ImageNet-normalised, not 0..255.
        assert image.min() < 0 < image.max() < 3


def test_dataset_with_augment_returns_same_types(manifest):
    dataset = SegmentationDataset(manifest, 32, augment=build_augment(hflip=1.0, rotate=30))
    image, mask = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert mask.shape == (32, 32) and mask.dtype == torch.int64


def test_dataset_for_prediction_gives_original_size(manifest):
    dataset = SegmentationDataset(manifest, 32, with_mask=False)
    image, image_id, height, width = dataset[1]
    assert image.shape == (3, 32, 32)
    assert (image_id, height, width) == ("img1", 37, 29)


# Preprocessed split arrays (what training and prediction read) ------------------------------


def test_preprocessed_array_matches_the_dataset(manifest, tmp_path):
    manifest_csv = tmp_path / "split.csv"
    manifest.to_csv(manifest_csv, index=False)
    array = load_array(preprocess_split(manifest_csv, tmp_path / "split.npy", image_size=32))
    assert array.shape == (2, 32, 32, 4) and array.dtype == np.uint8

    arrays, plain = ArrayDataset(tmp_path / "split.npy"), SegmentationDataset(manifest, 32)
    assert len(arrays) == 2
    for i in range(2):
        image, mask = arrays[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
        assert mask.dtype == torch.uint8 and mask.shape == (32, 32)
        # The same pixels and class ids as decoding the files directly.
        plain_image, plain_mask = plain[i]
        torch.testing.assert_close(to_model_input(image), plain_image)
        assert torch.equal(mask.long(), plain_mask)


def test_array_augmentation_is_seeded_per_sample(manifest, tmp_path):
    manifest_csv = tmp_path / "split.csv"
    manifest.to_csv(manifest_csv, index=False)
    preprocess_split(manifest_csv, tmp_path / "split.npy", image_size=32)
    dataset = ArrayDataset(tmp_path / "split.npy", augment=build_augment(hflip=0.5, rotate=20))
    rng_before = torch.get_rng_state()
    first = dataset[(0, 1234)]
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    torch.manual_seed(99)  # whatever the global RNG holds, the sample's seed decides
    again = dataset[(0, 1234)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    others = [dataset[(0, seed)][0] for seed in range(5)]
    assert any(not torch.equal(first[0], other) for other in others)
