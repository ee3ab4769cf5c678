"""Real-data faults, each built by the test: the defined behaviour, the log line naming the file,
the quarantine row (file, problem) or the error, and no input file ever modified.

The faults are those the real Oxford-IIIT Pet archive is known to hold (``.jpg`` files that are
really PNG with alpha or palette GIF, greyscale and CMYK JPEGs, ``.mat`` files and AppleDouble
``._`` files among the images) and more. Download, pretrained-weight and config faults are
covered by tests/data/test_download.py, tests/models/test_build.py and tests/workflow/test_config.py.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.data.images import load_rgb
from segpipe.data.remap import UnmappedValuesError
from segpipe.logs import UserError

from helpers.remap import IGNORE_VALUE, SIZE, half_mask, run_remap, solid, tree_digest

RED = (255, 0, 0)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# Each fault: how the test builds its files, and what must happen.
def _png_with_alpha_named_jpg(images: Path, masks: Path) -> None:
    rgba = np.zeros((SIZE, SIZE, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0  # red, fully transparent
    Image.fromarray(rgba, mode="RGBA").save(images / "png_as_jpg.jpg", format="PNG")
    Image.fromarray(half_mask()).save(masks / "png_as_jpg.png")


def _palette_gif_named_jpg(images: Path, masks: Path) -> None:
    gif = Image.new("P", (SIZE, SIZE), 1)
    gif.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    gif.save(images / "gif_as_jpg.jpg", format="GIF")
    Image.fromarray(half_mask()).save(masks / "gif_as_jpg.png")


def _greyscale(images: Path, masks: Path) -> None:
    Image.fromarray(np.full((SIZE, SIZE), 90, dtype=np.uint8), mode="L").save(images / "grey.jpg")
    Image.fromarray(half_mask()).save(masks / "grey.png")


def _cmyk(images: Path, masks: Path) -> None:
    Image.new("CMYK", (SIZE, SIZE), (0, 255, 255, 0)).save(images / "cmyk.jpg", quality=100)
    Image.fromarray(half_mask()).save(masks / "cmyk.png")


def _sixteen_bit(images: Path, masks: Path) -> None:
    values = np.full((SIZE, SIZE), 1000, dtype=np.uint16)
    values[0, 0] = 4000  # 12-bit data: the maximum becomes 255, 1000 -> 64
    Image.fromarray(values).save(images / "sixteen.png")
    Image.fromarray(half_mask()).save(masks / "sixteen.png")


def _truncated_image(images: Path, masks: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(images / "truncated.jpg", quality=95)
    truncate(images / "truncated.jpg")
    Image.fromarray(half_mask(64)).save(masks / "truncated.png")


def _corrupt_image(images: Path, masks: Path) -> None:
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    Image.fromarray(half_mask()).save(masks / "corrupt.png")


def _empty_image(images: Path, masks: Path) -> None:
    (images / "empty.jpg").write_bytes(b"")
    Image.fromarray(half_mask()).save(masks / "empty.png")


def _stray_files(images: Path, masks: Path) -> None:
    (images / "Abyssinian_100.mat").write_bytes(b"MATLAB 5.0 MAT-file")  # as in the real archive
    (images / "._good_0.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (masks / "._good_0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")


def _missing_mask(images: Path, masks: Path) -> None:
    Image.fromarray(solid(RED)).save(images / "no_mask.jpg")


def _missing_image(images: Path, masks: Path) -> None:
    Image.fromarray(half_mask()).save(masks / "no_image.png")


def _size_mismatch(images: Path, masks: Path) -> None:
    Image.fromarray(solid(RED)).save(images / "size.jpg")
    Image.fromarray(half_mask(SIZE + 4)).save(masks / "size.png")


def _single_value_mask(images: Path, masks: Path) -> None:
    Image.fromarray(solid(RED)).save(images / "single.jpg")
    Image.fromarray(np.full((SIZE, SIZE), 255, dtype=np.uint8)).save(masks / "single.png")


def _all_ignored_mask(images: Path, masks: Path) -> None:
    Image.fromarray(solid(RED)).save(images / "all_ignored.jpg")
    Image.fromarray(np.full((SIZE, SIZE), IGNORE_VALUE, dtype=np.uint8)).save(
        masks / "all_ignored.png"
    )


def _colour_mask(images: Path, masks: Path) -> None:
    Image.fromarray(solid(RED)).save(images / "colour_mask.jpg")
    Image.fromarray(solid((255, 0, 0))).save(masks / "colour_mask.png")


def _jpeg_mask(images: Path, masks: Path) -> None:
    Image.fromarray(solid(RED)).save(images / "jpeg_mask.jpg")
    Image.fromarray(half_mask()).save(masks / "jpeg_mask.jpg")


def _truncated_mask(images: Path, masks: Path) -> None:
    Image.fromarray(solid(RED, 64)).save(images / "truncated_mask.png")
    noise = np.random.default_rng(1).choice([0, 255], (64, 64)).astype(np.uint8)
    Image.fromarray(noise).save(masks / "truncated_mask.png")
    truncate(masks / "truncated_mask.png")


BUILDERS = [
    _png_with_alpha_named_jpg,
    _palette_gif_named_jpg,
    _greyscale,
    _cmyk,
    _sixteen_bit,
    _truncated_image,
    _corrupt_image,
    _empty_image,
    _stray_files,
    _missing_mask,
    _missing_image,
    _size_mismatch,
    _single_value_mask,
    _all_ignored_mask,
    _colour_mask,
    _jpeg_mask,
    _truncated_mask,
]
N_GOOD = 40


def build_faulty(root: Path) -> Path:
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_GOOD):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(
            images / f"good_{i}.jpg"
        )
        Image.fromarray(half_mask()).save(masks / f"good_{i}.png")
    for build in BUILDERS:
        build(images, masks)
    return root


@pytest.fixture(scope="module")
def remapped(tmp_path_factory):
    """The faulty folder, remapped once (in a process pool); its digests before and after."""
    root = build_faulty(tmp_path_factory.mktemp("faulty") / "data")
    before = tree_digest(root)
    out = tmp_path_factory.mktemp("out")
    index, log = run_remap(root, out)
    quarantine = pd.read_csv(out / "quarantine.csv", keep_default_na=False)
    return {
        "root": root,
        "out": out,
        "index": index,
        "log": log.lines,
        "quarantine": dict(zip(quarantine["file"], quarantine["problem"], strict=True)),
        "before": before,
        "after": tree_digest(root),
    }


def logged(remapped, level: int, *parts: str) -> bool:
    return any(lvl >= level and all(p in msg for p in parts) for lvl, msg in remapped["log"])


# Images that can be decoded are used, converted to RGB correctly, with a log line naming them.
@pytest.mark.parametrize(
    "name, expected_rgb, level, log_parts",
    [
        ("png_as_jpg.jpg", RED, logging.WARNING, ["is really PNG (mode RGBA), named .jpg"]),
        ("png_as_jpg.jpg", RED, logging.WARNING, ["alpha channel (RGBA) dropped"]),
        ("gif_as_jpg.jpg", (10, 200, 30), logging.WARNING, ["is really GIF (mode P)"]),
        ("grey.jpg", (90, 90, 90), logging.INFO, ["greyscale (L)"]),
        ("cmyk.jpg", RED, logging.WARNING, ["CMYK: converted to RGB"]),
        ("sixteen.png", (64, 64, 64), logging.WARNING, ["high bit depth (I;16, maximum 4000)"]),
    ],
)
def test_decodable_odd_images_are_used_as_rgb(remapped, name, expected_rgb, level, log_parts):
    path = remapped["root"] / "images" / name
    assert path.stem in set(remapped["index"]["id"])
    assert str(path) not in remapped["quarantine"]
    assert logged(remapped, level, str(path), *log_parts)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB"
    assert np.abs(np.asarray(rgb)[1, 1].astype(int) - expected_rgb).max() <= 2


@pytest.mark.parametrize(
    "file, problem",
    [
        ("images/truncated.jpg", "unreadable image (OSError: image file is truncated"),
        ("images/corrupt.png", "unreadable image ("),
        ("images/empty.jpg", "unreadable image (UnidentifiedImageError"),
        ("images/Abyssinian_100.mat", "not an image file (suffix .mat)"),
        ("images/._good_0.jpg", "hidden file"),
        ("masks/._good_0.png", "hidden file"),
        ("images/no_mask.jpg", "no mask for this image in"),
        ("masks/no_image.png", "no image for this mask in"),
        ("masks/size.png", "mask 20x20 and image 16x16 differ in size"),
        ("masks/all_ignored.png", "no labelled pixel: every mask value [128] maps to ignore"),
        (
            "masks/colour_mask.png",
            "colour mask (R, G and B differ): map its colours with remap.colors",
        ),
        ("masks/jpeg_mask.jpg", "JPEG mask: lossy compression"),
        ("images/jpeg_mask.jpg", "no mask for this image in"),
        ("masks/truncated_mask.png", "unreadable mask ("),
    ],
)
def test_unusable_files_are_quarantined_with_a_log_line(remapped, file, problem):
    path = str(remapped["root"] / file)
    assert path in remapped["quarantine"], sorted(remapped["quarantine"])
    assert problem in remapped["quarantine"][path]
    assert logged(remapped, logging.WARNING, f"quarantined {path}: ", problem)
    if not Path(file).name.startswith("."):
        assert Path(file).stem not in set(remapped["index"]["id"])


def test_quarantine_lists_every_fault_and_nothing_else(remapped):
    assert len(remapped["quarantine"]) == 14
    good = {f"good_{i}" for i in range(N_GOOD)}
    kept = {"png_as_jpg", "gif_as_jpg", "grey", "cmyk", "sixteen", "single"}
    assert set(remapped["index"]["id"]) == good | kept
    # Every file in the dataset is used, or quarantined, or the partner of a quarantined file
    # (a pair is one quarantine row): nothing is dropped silently.
    used = set(remapped["index"]["image"]) | set(remapped["index"]["raw_mask"])
    quarantined_stems = {Path(f).stem for f in remapped["quarantine"]}
    for f in remapped["before"]:
        path = str(remapped["root"] / f)
        assert path in used or path in remapped["quarantine"] or Path(f).stem in quarantined_stems


def test_single_value_mask_is_kept_with_a_warning(remapped):
    row = remapped["index"].set_index("id").loc["single"]
    assert np.unique(np.asarray(Image.open(row["mask"]))).tolist() == [1]
    assert logged(
        remapped, logging.WARNING, str(remapped["root"] / "masks/single.png"), "single value 255"
    )


def test_training_only_meets_decodable_pairs(remapped, tmp_path):
    from segpipe.data.arrays import ArrayDataset
    from segpipe.data.preprocess import preprocess_split

    remapped["index"].to_csv(tmp_path / "all.csv", index=False)
    preprocess_split(tmp_path / "all.csv", tmp_path / "all.npy", image_size=32)
    dataset = ArrayDataset(tmp_path / "all.npy")
    images, masks = dataset.__getitems__(list(range(len(dataset)))).unpack("cpu")
    assert len(dataset) == len(remapped["index"])
    assert tuple(images.shape[1:]) == (3, 32, 32) and tuple(masks.shape[1:]) == (32, 32)


def test_no_input_file_is_modified(remapped):
    assert remapped["after"] == remapped["before"]


def test_dataset_summary_is_logged(remapped):
    summary = [msg for _, msg in remapped["log"] if msg.startswith("dataset summary")]
    assert len(summary) == 1
    text = summary[0]
    assert "Pairs: 53 found, 46 usable, 7 unusable; 3 unpaired files, 4 stray files" in text
    assert "JPEG CMYK 1" in text and "PNG RGBA 1" in text and "GIF P 1" in text
    assert "Verdict: 14 problem(s)" in text


def test_too_many_unusable_pairs_fail_the_run(remapped, tmp_path):
    with pytest.raises(
        ValueError, match=r"unusable \(more than remap.max_quarantine_fraction=0.1\)"
    ):
        run_remap(remapped["root"], tmp_path, max_quarantine_fraction=0.1)
    # The quarantine list is still written, and no masks or index appear.
    assert len(pd.read_csv(tmp_path / "quarantine.csv")) == 14
    assert not (tmp_path / "index.csv").exists() and not (tmp_path / "masks").exists()


def test_stray_files_do_not_count_towards_the_fraction(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        Image.fromarray(solid(RED)).save(root / "images" / f"a{i}.jpg")
        Image.fromarray(half_mask()).save(root / "masks" / f"a{i}.png")
    for name in ("Abyssinian_100.mat", "Abyssinian_101.mat", "README.txt", ".DS_Store"):
        (root / "images" / name).write_bytes(b"x")
    index, _ = run_remap(root, tmp_path / "out", max_quarantine_fraction=0.0, threads=1)
    assert len(index) == 3
    assert len(pd.read_csv(tmp_path / "out" / "quarantine.csv")) == 4


def _unmapped_dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        Image.fromarray(solid(RED)).save(root / "images" / f"m{i}.png")
        mask = half_mask()
        if i == 2:
            mask[0, :3] = [77, 78, 77]  # values outside the table
        Image.fromarray(mask).save(root / "masks" / f"m{i}.png")
    return root


def test_unmapped_values_stop_the_run_naming_file_and_values(tmp_path):
    root = _unmapped_dataset(tmp_path / "data")
    with pytest.raises(UnmappedValuesError) as err:
        run_remap(root, tmp_path / "out", threads=1)
    message = str(err.value)
    assert str(root / "masks" / "m2.png") in message
    assert "mask values [77, 78] are not in remap.table [0, 255]" in message
    assert not (tmp_path / "out" / "index.csv").exists()


def test_unmapped_values_can_be_ignored_with_a_warning(tmp_path):
    root = _unmapped_dataset(tmp_path / "data")
    index, log = run_remap(root, tmp_path / "out", threads=1, unmapped="ignore")
    mask = np.asarray(Image.open(index.set_index("id").loc["m2", "mask"]))
    assert mask[0, :3].tolist() == [255, 255, 255] and mask[0, 8] == 1
    assert any(
        lvl == logging.WARNING and str(root / "masks" / "m2.png") in m and "marked as ignored" in m
        for lvl, m in log.lines
    )


def test_unmapped_values_can_quarantine_the_pair(tmp_path):
    root = _unmapped_dataset(tmp_path / "data")
    index, _ = run_remap(root, tmp_path / "out", threads=1, unmapped="quarantine")
    assert "m2" not in set(index["id"])
    quarantine = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert quarantine.to_dict("records") == [
        {
            "file": str(root / "masks" / "m2.png"),
            "problem": "mask values [77, 78] are not in remap.table [0, 255] (add them to the "
            "table, set remap.ignore_value, or remap.unmapped: ignore/quarantine)",
        }
    ]


def test_no_pairs_at_all_is_a_clear_error(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(solid(RED)).save(root / "images" / "a.jpg")
    with pytest.raises(FileNotFoundError, match="mask directory not found: .*masks"):
        run_remap(root, tmp_path / "out")


def _pair_row(tmp_path: Path, mask: np.ndarray) -> dict:
    """A row of the index for one image and its mask, as check_pair takes it."""
    image, raw = tmp_path / "a.png", tmp_path / "a_mask.png"
    Image.fromarray(np.zeros(mask.shape[:2] + (3,), np.uint8)).save(image)
    Image.fromarray(mask).save(raw)
    return {"id": "a", "image": str(image), "raw_mask": str(raw)}


def test_counting_colours_gives_each_colour_and_the_packed_keys(tmp_path):
    """A counting spec for colours (segpipe plan on a colour-mask dataset): every colour with its
    pixels, and the packed colours as the "mapped" mask, not wrapped to 8 bits."""
    from segpipe.data.remap import RemapSpec, check_pair, pack_rgb

    mask = solid(RED)
    mask[:4] = (0, 128, 255)
    result, keys = check_pair(_pair_row(tmp_path, mask), RemapSpec(None, count_colors=True))
    assert "problem" not in result
    assert result["value_counts"] == {(255, 0, 0): 12 * SIZE, (0, 128, 255): 4 * SIZE}
    assert keys is not None and keys.dtype == np.uint32
    assert set(np.unique(keys).tolist()) == {
        int(pack_rgb(np.array(c, np.uint8))) for c in (RED, (0, 128, 255))
    }
    assert result["class_counts"] == {
        int(pack_rgb(np.array(RED, np.uint8))): 12 * SIZE,
        33023: 4 * SIZE,
    }


def test_counting_values_keeps_16_bit_values_whole(tmp_path):
    """Counting raw values of a 16-bit mask: 300 and 70 stay 300 and 70 (not 300 % 256 = 44)."""
    from segpipe.data.remap import RemapSpec, check_pair

    mask = np.full((SIZE, SIZE), 300, dtype=np.uint16)
    mask[:2] = 70
    result, keys = check_pair(_pair_row(tmp_path, mask), RemapSpec(None))
    assert result["value_counts"] == {70: 2 * SIZE, 300: 14 * SIZE}
    assert keys is not None and sorted(np.unique(keys).tolist()) == [70, 300]
    assert result["class_counts"] == {70: 2 * SIZE, 300: 14 * SIZE}


def _no_pairs(root: Path) -> dict:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "images" / "notes.txt").write_text("x")
    return {}


def _mostly_unusable(root: Path) -> dict:
    _unmapped_dataset(root)
    for mask in (root / "masks").glob("m[013].png"):
        Image.fromarray(np.zeros((SIZE, SIZE + 1), np.uint8)).save(mask)  # a size of its own
    return {"max_quarantine_fraction": 0.1, "unmapped": "ignore"}


def _missing_masks_folder(root: Path) -> dict:
    _unmapped_dataset(root)
    return {"masks_dir": "labels"}


def _list_line_naming_no_pair(root: Path) -> dict:
    _unmapped_dataset(root)
    (root / "test.txt").write_text("m0\nm9\n")
    return {"split_lists": {"test": "test.txt"}, "unmapped": "ignore"}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: _unmapped_dataset(root) and {}, "mask values [77, 78] are not in remap"),
        (_no_pairs, "no image/mask pairs found (layout 'folder'); 1 files quarantined, see "),
        (_mostly_unusable, "3 of 4 pairs in {root} are unusable"),
        (_missing_masks_folder, "mask directory not found: {root}/labels (dataset.masks_dir)"),
        (lambda root: {}, "dataset.root {root}: no such folder"),
        (lambda root: root.write_text("x") and {}, "dataset.root {root}: is a file, not a dataset"),
        (_list_line_naming_no_pair, "1 split-list line(s) name no image/mask pair"),
    ],
    ids=[
        "unmapped",
        "no-pairs",
        "mostly-unusable",
        "missing-folder",
        "missing-root",
        "root-a-file",
        "list-line",
    ],
)
def test_a_dataset_the_run_cannot_use_is_a_user_error_in_one_line(tmp_path, make, message):
    """Bad data ends the remap job with its message and no traceback (segpipe.logs): the
    errors are UserErrors, as the split's (tests/data/test_split.py) and the plan's are."""
    root = tmp_path / "data"
    options = make(root)
    with pytest.raises(UserError) as err:
        run_remap(root, tmp_path / "out", threads=1, **options)
    assert message.format(root=root) in str(err.value)
    assert not (tmp_path / "out" / "index.csv").exists()
