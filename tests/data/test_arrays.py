"""Image reading in every mode, the per-file Dataset, and the preprocessed arrays and their loader."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from segpipe.data.arrays import (
    ArrayDataset,
    Batch,
    EpochSampler,
    batch_loader,
    replicate_padding,
    sample_extents,
)
from segpipe.data.images import load_rgb
from segpipe.data.masks import load_mask
from segpipe.data.preprocess import load_array, preprocess_split
from segpipe.models.device import prepare_batch
from segpipe.training.augment import BatchAugment

from tools.bench.naive_loader import SegmentationDataset, to_model_input

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
    dataset = SegmentationDataset(
        manifest, 32, augment=v2.Compose([v2.RandomHorizontalFlip(1.0), v2.RandomRotation(30)])
    )
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


def split_array(manifest, tmp_path):
    manifest_csv = tmp_path / "split.csv"
    manifest.to_csv(manifest_csv, index=False)
    return preprocess_split(manifest_csv, tmp_path / "split.npy", image_size=32)


def test_a_batch_is_one_packed_tensor_with_its_seeds(manifest, tmp_path):
    dataset = ArrayDataset(split_array(manifest, tmp_path))
    array = load_array(tmp_path / "split.npy")
    batch = dataset.__getitems__([(1, 11), (0, 22), (1, 33)])
    assert isinstance(batch, Batch) and batch.seeds == (11, 22, 33)
    assert batch.samples.dtype == torch.uint8 and batch.samples.shape == (3, 32, 32, 4)
    assert np.array_equal(batch.samples.numpy(), array[[1, 0, 1]])
    images, masks = batch.unpack("cpu")
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 32, 32)
    assert torch.equal(images[1], torch.from_numpy(np.array(array[0, ..., :3])).permute(2, 0, 1))
    assert torch.equal(masks[0], torch.from_numpy(np.array(array[1, ..., 3])))
    assert dataset.__getitems__([0, 1]).seeds == ()  # plain indices: nothing to augment with


def test_prepare_batch_normalises_like_the_reference_dataset(manifest, tmp_path):
    dataset = ArrayDataset(split_array(manifest, tmp_path))
    images, masks = prepare_batch(dataset.__getitems__([0, 1]), torch.device("cpu"), False)
    plain = SegmentationDataset(manifest, 32)
    for i in range(2):
        torch.testing.assert_close(images[i], plain[i][0])
        assert torch.equal(masks[i], plain[i][1])
    assert masks.dtype == torch.int64


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_do_not_depend_on_workers(manifest, tmp_path, workers):
    """Same batches, in the same order, with the same seeds, whatever the number of workers."""
    path = split_array(pd.concat([manifest] * 5, ignore_index=True), tmp_path)
    data = ArrayDataset(path)

    def epoch(num_workers):
        sampler = EpochSampler(len(data), seed=3)
        sampler.set_epoch(2)
        loader = batch_loader(data, batch_size=4, sampler=sampler, workers=num_workers)
        assert isinstance(loader, DataLoader)
        return list(loader)

    ours, reference = epoch(workers), epoch(0)
    assert len(ours) == 3  # 10 samples in batches of 4, the last one short
    for a, b in zip(ours, reference, strict=True):
        assert torch.equal(a.samples, b.samples) and a.seeds == b.seeds


def test_prepare_batch_augments_with_the_batch_seeds(manifest, tmp_path):
    dataset = ArrayDataset(split_array(manifest, tmp_path))
    augment = BatchAugment(hflip=1.0)
    batch = dataset.__getitems__([(0, 5), (1, 6)])
    flipped, flipped_masks = prepare_batch(batch, torch.device("cpu"), False, augment)
    plain, plain_masks = prepare_batch(batch, torch.device("cpu"), False)
    assert torch.equal(flipped, plain.flip(-1)) and torch.equal(flipped_masks, plain_masks.flip(-1))


@pytest.mark.cuda
def test_pinned_batches_reach_the_gpu(manifest, tmp_path):
    data = ArrayDataset(split_array(manifest, tmp_path))
    loader = batch_loader(
        data, batch_size=2, sampler=EpochSampler(2, seed=0), workers=1, pin_memory=True
    )
    batch = next(iter(loader))
    assert isinstance(batch, Batch) and batch.samples.is_pinned() and len(batch.seeds) == 2
    images, masks = prepare_batch(batch, torch.device("cuda"), True, BatchAugment(hflip=0.5))
    assert images.is_cuda and images.is_contiguous(memory_format=torch.channels_last)
    assert masks.is_cuda and masks.dtype == torch.int64


PREPROCESS = """
import sys
from segpipe.data.preprocess import preprocess_split
from segpipe.io import WriteError
try:
    preprocess_split(sys.argv[1], sys.argv[2], image_size=int(sys.argv[3]))
except WriteError as exc:
    print(exc)
    sys.exit(3)
"""


def test_a_full_disk_is_one_line_not_a_sigbus_and_the_old_array_stays(manifest, tmp_path):
    """Preprocess writes through a memory map: on a full disk a write into it would find no
    block and the kernel would kill the job with SIGBUS. The file's blocks are taken first, so
    a full disk is one line naming the array (in a process of its own: a SIGBUS would kill
    pytest)."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys

    from helpers.filesystems import tmpfs

    manifest.to_csv(tmp_path / "train.csv", index=False)
    with tmpfs(tmp_path / "disk", "256k") as disk:
        out = disk / "train.npy"
        preprocess_split(tmp_path / "train.csv", out, image_size=32)
        before = out.read_bytes()
        args = [sys.executable, "-c", PREPROCESS, str(tmp_path / "train.csv"), str(out), "256"]
        with open(tmp_path / "stdout", "w+") as stdout:
            # Its own process group, ended whole: a pool worker outlives a killed parent.
            proc = subprocess.Popen(args, stdout=stdout, start_new_session=True)
            try:
                returncode = proc.wait(timeout=120)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            assert returncode == 3, returncode  # -7 is SIGBUS
            stdout.seek(0)
            assert stdout.read().strip() == f"cannot write {out}: no space left on the device"
        assert out.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == ["train.npy"]


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 7])
def test_array_rows_digest_is_of_the_arrays_bytes_and_the_rows(tmp_path, size) -> None:
    """ArrayRows.digest hashes the arrays' files whole (hashlib.file_digest into one hash) and
    the rows picked: the same bytes and rows, the same digest, as earlier checkpoints recorded."""
    import hashlib

    from segpipe.data.preprocess import ArrayRows

    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    a.write_bytes(os.urandom(size))
    b.write_bytes(b"xyz")
    rows = ArrayRows((str(a), str(b)), ((0, 1), (1, 0)))
    whole = a.read_bytes() + b.read_bytes() + repr(rows.rows).encode()
    assert rows.digest() == hashlib.sha256(whole).hexdigest()
    assert ArrayRows((str(a), str(b)), ((0, 1),)).digest() != rows.digest()


def _padded(sizes, canvas, seed=0):
    """A batch of random images of ``sizes`` (labels 0..2, pixels 1..255), each top-left in a
    ``canvas`` padded as preprocess pads images kept at a scale: black, labelled IGNORE."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.zeros(len(sizes), 3, *canvas, dtype=torch.uint8)
    masks = torch.full((len(sizes), *canvas), IGNORE, dtype=torch.uint8)
    for i, (h, w) in enumerate(sizes):
        images[i, :, :h, :w] = torch.randint(1, 256, (3, h, w), generator=gen, dtype=torch.uint8)
        masks[i, :h, :w] = torch.randint(0, 3, (h, w), generator=gen, dtype=torch.uint8)
    return images, masks


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 12), st.integers(1, 12)), min_size=1, max_size=4),
    st.integers(0, 3),
)
def test_each_samples_extent_and_padding_are_its_own(sizes, extra) -> None:
    """The padding below and right of each sample is found, and filled with the sample's edge
    pixels exactly as prediction pads an image alone (replicate)."""
    canvas = (max(h for h, _ in sizes) + extra, max(w for _, w in sizes) + extra)
    images, masks = _padded(sizes, canvas)
    heights, widths = sample_extents(images, masks, IGNORE)
    assert list(zip(heights.tolist(), widths.tolist(), strict=True)) == sizes
    filled = replicate_padding(images, masks, IGNORE)
    for i, (h, w) in enumerate(sizes):
        alone = images[i : i + 1, :, :h, :w].float()
        pad = (0, canvas[1] - w, 0, canvas[0] - h)
        assert torch.equal(filled[i].float(), F.pad(alone, pad, mode="replicate")[0])


def test_crops_fall_within_each_samples_own_image() -> None:
    """A sample smaller than the split's largest is cropped within itself, never in the
    padding around it; one smaller than the crop is padded with its edge, the padding ignored."""
    images, masks = _padded([(12, 14), (7, 9), (4, 10)], (12, 14))
    augment = BatchAugment(crop=6, ignore_index=IGNORE)
    for seed in range(40):
        cropped, cmasks = augment(images, masks, [seed, seed + 100, seed + 200])
        for i in (0, 1):  # at least the crop's size: a window of the image itself
            assert (cmasks[i] != IGNORE).all() and (cropped[i] != 0).any(0).all()
        assert (cmasks[2, 4:] == IGNORE).all() and (cmasks[2, :4] != IGNORE).all()
        assert torch.equal(cropped[2, :, 4:], cropped[2, :, 3:4].expand(3, 2, 6))
