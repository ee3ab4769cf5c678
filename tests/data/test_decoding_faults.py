"""Decoding faults, each built by the test: float masks (probability maps) and EXIF-oriented
images and masks. As in tests/data/test_remap.py: the defined behaviour, the log line naming the
file, the quarantine row (file, problem) or the error, and no input file ever modified.

Float masks: integral values are those integers; non-integer values follow ``remap.unmapped``
('error' stops the run, 'quarantine' quarantines the pair, 'ignore' maps the pixels to
ignore_index), naming the file and the sorted values. EXIF orientation: images (and the rare
EXIF-tagged mask) are decoded as viewers show them, everywhere they are read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.data.images import inspect_image, load_rgb
from segpipe.data.remap import NonIntegerMaskError, UnmappedValuesError, read_mask_values
from segpipe.data.verify import format_summary, verify_dataset

from helpers.remap import half_mask, run_remap, tree_digest

SIZE = 16
GREY, RED = (128, 128, 128), (255, 0, 0)

# ---------------------------------------------------------------------------------------------
# Float masks (TIFF mode F)

PROB_TABLE = {0: 0, 1: 1}


def float_mask(odd: dict[tuple[int, int], float] | None = None) -> np.ndarray:
    """A float32 0.0/1.0 mask (right half 1.0) with ``odd`` pixels set to other values."""
    mask = (half_mask() > 0).astype(np.float32)
    for (y, x), value in (odd or {}).items():
        mask[y, x] = value
    return mask


def float_dataset(root: Path, odd: dict[tuple[int, int], float]) -> Path:
    """Three pairs with float TIFF masks; ``f1``'s mask holds the ``odd`` values."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        Image.new("RGB", (SIZE, SIZE), GREY).save(root / "images" / f"f{i}.png")
        mask = float_mask(odd if i == 1 else None)
        Image.fromarray(mask, mode="F").save(root / "masks" / f"f{i}.tif")
    return root


PROBABILITIES = {(0, 0): 0.6, (0, 1): 0.6, (1, 0): 0.25}
EXPECTED_PROBLEM = (
    "non-integer mask values [0.25, 0.6] in 3 pixels (a float mask, e.g. a probability map: "
    "save class ids as integers, or remap.unmapped: ignore/quarantine)"
)


def test_integral_float_mask_is_read_as_those_integers(tmp_path):
    root = float_dataset(tmp_path / "data", {})
    assert Image.open(root / "masks" / "f1.tif").mode == "F"
    index, _ = run_remap(root, tmp_path / "out", table=PROB_TABLE, threads=1)
    assert sorted(index["id"]) == ["f0", "f1", "f2"]
    mask = np.asarray(Image.open(index.set_index("id").loc["f1", "mask"]))
    assert mask.tolist() == (half_mask() > 0).astype(np.uint8).tolist()


def test_non_integer_float_mask_stops_the_run_naming_file_and_values(tmp_path):
    root = float_dataset(tmp_path / "data", PROBABILITIES)
    before = tree_digest(root)
    with pytest.raises(UnmappedValuesError) as err:
        run_remap(root, tmp_path / "out", table=PROB_TABLE, threads=1)
    assert f"{root / 'masks' / 'f1.tif'}: {EXPECTED_PROBLEM}" in str(err.value)
    assert not (tmp_path / "out" / "index.csv").exists()
    assert tree_digest(root) == before


def test_non_integer_float_mask_can_quarantine_the_pair(tmp_path):
    root = float_dataset(tmp_path / "data", PROBABILITIES)
    index, log = run_remap(
        root, tmp_path / "out", table=PROB_TABLE, threads=1, unmapped="quarantine"
    )
    assert sorted(index["id"]) == ["f0", "f2"]
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert quarantine.to_dict("records") == [
        {"file": str(root / "masks" / "f1.tif"), "problem": EXPECTED_PROBLEM}
    ]
    assert any(
        lvl == logging.WARNING
        and m == f"quarantined {root / 'masks' / 'f1.tif'}: {EXPECTED_PROBLEM}"
        for lvl, m in log.lines
    )


def test_non_integer_float_mask_pixels_can_be_ignored(tmp_path):
    root = float_dataset(tmp_path / "data", PROBABILITIES)
    index, log = run_remap(root, tmp_path / "out", table=PROB_TABLE, threads=1, unmapped="ignore")
    mask = np.asarray(Image.open(index.set_index("id").loc["f1", "mask"]))
    assert mask[0, :2].tolist() == [255, 255] and mask[1, 0] == 255
    assert mask[1, 1] == 0 and mask[0, SIZE - 1] == 1  # the integral pixels are mapped
    assert any(
        lvl == logging.WARNING
        and str(root / "masks" / "f1.tif") in m
        and "non-integer mask values [0.25, 0.6]" in m
        and m.endswith(": marked as ignored")
        for lvl, m in log.lines
    )


def test_read_mask_values_names_at_most_five_sorted_values_and_nan(tmp_path):
    odd = {(0, i): v for i, v in enumerate([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, float("nan")])}
    path = tmp_path / "prob.tif"
    Image.fromarray(float_mask(odd), mode="F").save(path)
    with pytest.raises(NonIntegerMaskError) as err:
        read_mask_values(path)
    assert str(err.value).startswith(
        f"{path}: non-integer mask values [0.1, 0.2, 0.3, 0.5, 0.7, ... 7 distinct] in 7 pixels"
    )
    Image.fromarray(float_mask(), mode="F").save(path)
    assert read_mask_values(path).tolist() == (half_mask() > 0).astype(int).tolist()


@pytest.mark.parametrize("table", [PROB_TABLE, None], ids=["table", "no-table"])
def test_verify_reports_a_non_integer_float_mask_as_a_problem(tmp_path, table):
    root = float_dataset(tmp_path / "data", PROBABILITIES)
    summary = verify_dataset(root, table=table)
    assert summary["pairs_usable"] == 2 and not summary["ok"]
    assert summary["problems"] == [
        {"file": str(root / "masks" / "f1.tif"), "problem": EXPECTED_PROBLEM}
    ]
    text = format_summary(summary)
    assert f"{root / 'masks' / 'f1.tif'}: {EXPECTED_PROBLEM}" in text.splitlines()[-2]
    assert [v["value"] for v in summary["mask_values"]] == ["0", "1"]


@pytest.mark.parametrize(
    "dtype, suffix, raw, mode",
    [
        (np.uint16, ".png", 300, "I;16"),
        (np.int32, ".tif", 70000, "I"),
        (np.float32, ".tif", 300.0, "F"),
    ],
)
def test_high_bit_integer_and_float_masks_keep_their_values(tmp_path, dtype, suffix, raw, mode):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.new("RGB", (SIZE, SIZE), GREY).save(root / "images" / "a.png")
    values = np.where(half_mask() > 0, raw, 0).astype(dtype)
    Image.fromarray(values).save(root / "masks" / f"a{suffix}")
    assert Image.open(root / "masks" / f"a{suffix}").mode == mode
    index, _ = run_remap(root, tmp_path / "out", table={0: 0, int(raw): 1}, threads=1)
    mask = np.asarray(Image.open(index.loc[0, "mask"]))
    assert mask.tolist() == (half_mask() > 0).astype(np.uint8).tolist()


# ---------------------------------------------------------------------------------------------
# EXIF orientation

WIDE, TALL = 48, 32  # stored width and height of the non-square images
BLOCK = 8
# Where the stored top-left corner ends up as viewers show the image.
CORNER_AFTER = {1: "top-left", 3: "bottom-right", 6: "top-right", 8: "bottom-left"}


def save_with_orientation(img: Image.Image, path: Path, orientation: int, **kwargs) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, exif=exif, **kwargs)


def corner_image(width: int, height: int) -> Image.Image:
    """Grey, with a red BLOCK x BLOCK square in the stored top-left corner."""
    pixels = np.full((height, width, 3), GREY, dtype=np.uint8)
    pixels[:BLOCK, :BLOCK] = RED
    return Image.fromarray(pixels)


def save_jpeg(path: Path, width: int, height: int, orientation: int) -> None:
    img = corner_image(width, height)
    save_with_orientation(img, path, orientation, quality=95, subsampling=0)


def corner(pixels: np.ndarray, where: str) -> np.ndarray:
    """The pixel at the centre of the BLOCK x BLOCK square in corner ``where``."""
    y = BLOCK // 2 if where.startswith("top") else pixels.shape[0] - BLOCK // 2
    x = BLOCK // 2 if where.endswith("left") else pixels.shape[1] - BLOCK // 2
    return pixels[y, x].astype(int)


def is_red(pixel: np.ndarray) -> bool:
    return bool(np.abs(pixel - RED).max() <= 30)


def corner_mask(width: int, height: int) -> np.ndarray:
    """255 in the BLOCK x BLOCK top-left square, 0 elsewhere."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:BLOCK, :BLOCK] = 255
    return mask


def build_exif(root: Path) -> Path:
    """Pairs of EXIF-oriented images: non-square with its mask drawn as viewed, and as stored;
    square with orientations 3, 6 and 8; a mask that carries the orientation of its image; two
    plain pairs."""
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    save_jpeg(images / "viewed.jpg", WIDE, TALL, 6)
    Image.fromarray(corner_mask(TALL, WIDE)).save(masks / "viewed.png")
    save_jpeg(images / "stored.jpg", WIDE, TALL, 6)
    Image.fromarray(corner_mask(WIDE, TALL)).save(masks / "stored.png")
    for orientation in (3, 6, 8):
        save_jpeg(images / f"square{orientation}.jpg", SIZE, SIZE, orientation)
        Image.fromarray(corner_mask(SIZE, SIZE)).save(masks / f"square{orientation}.png")
    save_jpeg(images / "tagged_mask.jpg", WIDE, TALL, 6)
    mask = Image.fromarray(corner_mask(WIDE, TALL))
    save_with_orientation(mask, masks / "tagged_mask.png", 6)
    for i in range(2):
        corner_image(SIZE, SIZE).save(images / f"plain{i}.png")
        Image.fromarray(corner_mask(SIZE, SIZE)).save(masks / f"plain{i}.png")
    return root


@pytest.fixture(scope="module")
def exif_remapped(tmp_path_factory):
    root = build_exif(tmp_path_factory.mktemp("exif") / "data")
    before = tree_digest(root)
    out = tmp_path_factory.mktemp("exif_out")
    index, log = run_remap(root, out, table={0: 0, 255: 1}, threads=1, max_quarantine_fraction=0.5)
    quarantine = pd.read_csv(out / "quarantine.csv", keep_default_na=False)
    return {
        "root": root,
        "index": index.set_index("id"),
        "log": log.lines,
        "quarantine": dict(zip(quarantine["file"], quarantine["problem"], strict=True)),
        "before": before,
        "after": tree_digest(root),
    }


def logged(lines, level: int, *parts: str) -> bool:
    return any(lvl == level and all(p in msg for p in parts) for lvl, msg in lines)


def test_exif_rotated_image_with_mask_as_viewed_is_used_rotated(exif_remapped):
    row = exif_remapped["index"].loc["viewed"]
    assert (row["width"], row["height"]) == (TALL, WIDE)  # as viewers show it
    pixels = np.asarray(load_rgb(row["image"]))
    assert pixels.shape == (WIDE, TALL, 3)
    assert is_red(corner(pixels, "top-right")) and not is_red(corner(pixels, "top-left"))
    mask = np.asarray(Image.open(row["mask"]))
    assert mask.shape == (WIDE, TALL) and mask[0, 0] == 1  # the mask is used as it is stored
    assert logged(
        exif_remapped["log"],
        logging.WARNING,
        str(row["image"]),
        "EXIF orientation 6: rotated as viewers show it",
    )


def test_exif_rotated_image_with_mask_as_stored_is_quarantined_naming_exif(exif_remapped):
    path = str(exif_remapped["root"] / "masks" / "stored.png")
    assert exif_remapped["quarantine"][path] == (
        f"mask {WIDE}x{TALL} and image {TALL}x{WIDE} differ in size (the image's EXIF "
        f"orientation 6 rotates it; its stored size {WIDE}x{TALL} matches the mask: fix the "
        "orientation tag or rotate the mask)"
    )
    assert "stored" not in exif_remapped["index"].index


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_square_exif_image_is_decoded_rotated_with_a_note(exif_remapped, orientation):
    path = exif_remapped["root"] / "images" / f"square{orientation}.jpg"
    assert f"square{orientation}" in exif_remapped["index"].index
    pixels = np.asarray(load_rgb(path))
    assert is_red(corner(pixels, CORNER_AFTER[orientation]))
    assert not is_red(corner(pixels, "top-left"))
    info = inspect_image(path)
    assert (info.orientation, info.stored_size) == (orientation, (SIZE, SIZE))
    note = f"EXIF orientation {orientation}: rotated as viewers show it"
    assert any(level == logging.WARNING and note in text for level, text in info.notes)
    assert logged(exif_remapped["log"], logging.WARNING, str(path), note)


def test_mask_with_exif_orientation_is_rotated_like_its_image(exif_remapped):
    row = exif_remapped["index"].loc["tagged_mask"]
    mask = np.asarray(Image.open(row["mask"]))
    assert mask.shape == (WIDE, TALL)
    assert mask[0, TALL - 1] == 1 and mask[0, 0] == 0  # stored top-left -> viewed top-right
    assert logged(
        exif_remapped["log"],
        logging.WARNING,
        str(row["raw_mask"]),
        "mask EXIF orientation 6: rotated as viewers show it",
    )


def test_plain_pairs_have_no_orientation_note(exif_remapped):
    for i in range(2):
        path = str(exif_remapped["root"] / "images" / f"plain{i}.png")
        lines = [line for _, m in exif_remapped["log"] for line in m.splitlines()]
        assert not any(path in line and "EXIF" in line for line in lines)


def test_preprocessed_arrays_are_rotated_like_the_viewed_image(exif_remapped, tmp_path):
    from segpipe.data.preprocess import preprocess_split

    rows = exif_remapped["index"].loc[["viewed", "square6"]].reset_index()
    rows.to_csv(tmp_path / "rows.csv", index=False)
    arr = np.load(preprocess_split(tmp_path / "rows.csv", tmp_path / "rows.npy", image_size=48))
    for item in arr:
        assert is_red(corner(item[..., :3], "top-right"))
        assert not is_red(corner(item[..., :3], "top-left"))


def test_report_gallery_reads_the_image_as_viewed(exif_remapped, tmp_path):
    from segpipe.reporting.run_report import _composite

    row = exif_remapped["index"].loc["viewed"]
    sheet = np.asarray(_composite(Path(row["image"]), Path(row["mask"]), Path(row["mask"]), 2, 255))
    assert sheet.shape[0] == WIDE  # image, truth, prediction, error side by side, as viewed
    assert is_red(corner(sheet[:, :TALL], "top-right"))


def test_exif_inputs_are_not_modified(exif_remapped):
    assert exif_remapped["after"] == exif_remapped["before"]


def test_verify_names_exif_orientation_in_the_size_problem(exif_remapped):
    summary = verify_dataset(exif_remapped["root"], table={0: 0, 255: 1})
    problems = {Path(p["file"]).name: p["problem"] for p in summary["problems"]}
    assert "the image's EXIF orientation 6 rotates it" in problems["stored.png"]
    assert any("EXIF orientation 3: rotated as viewers show it" in w for w in summary["warnings"])


def test_invalid_exif_orientation_is_read_as_stored_with_a_warning(tmp_path):
    path = tmp_path / "odd.jpg"
    save_jpeg(path, WIDE, TALL, 9)
    pixels = np.asarray(load_rgb(path))
    assert pixels.shape == (TALL, WIDE, 3) and is_red(corner(pixels, "top-left"))
    info = inspect_image(path)
    assert (info.width, info.height, info.orientation) == (WIDE, TALL, 9)
    assert (logging.WARNING, "EXIF orientation 9 is not a valid value (1..8): read as stored") in (
        info.notes
    )
