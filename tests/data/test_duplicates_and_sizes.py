"""Identical images under two names (kept in one split and one fold, reported) and images too
large to decode (dataset.max_image_pixels: one quarantine row, no raw library warning)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.cli import main
from segpipe.data.split import fold_assignment, split_dataset, write_fold
from segpipe.data.verify import verify_dataset

from helpers.remap import half_mask, run_remap

SIZE = 16


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture
def twins(tmp_path: Path) -> Path:
    """Six distinct pairs, plus: a byte-identical copy of a0 (a0_copy.png), a0's pixels saved as
    BMP (a0_bmp.bmp) and as TIFF (a0_tif.tif), and a1 with one pixel changed (near.png), which
    is not identical."""
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(6):
        Image.fromarray(picture(i)).save(root / "images" / f"a{i}.png")
    copy = (root / "images" / "a0.png").read_bytes()
    (root / "images" / "a0_copy.png").write_bytes(copy)
    Image.fromarray(picture(0)).save(root / "images" / "a0_bmp.bmp")
    Image.fromarray(picture(0)).save(root / "images" / "a0_tif.tif")
    near = picture(1)
    near[0, 0, 0] ^= 1
    Image.fromarray(near).save(root / "images" / "near.png")
    for path in (root / "images").iterdir():
        Image.fromarray(half_mask(SIZE)).save(root / "masks" / f"{path.stem}.png")
    return root


def test_identical_images_share_a_content_digest_in_the_index(twins, tmp_path):
    index, log = run_remap(twins, tmp_path / "out", threads=1)
    content = index.set_index("id")["content"]
    same = {content[i] for i in ("a0", "a0_copy", "a0_bmp", "a0_tif")}
    assert len(same) == 1 and same.pop().startswith("sha256:")
    others = [content[i] for i in ("a1", "a2", "a3", "a4", "a5", "near")]
    assert len(set(others)) == 6 and content["a0"] not in others
    written = pd.read_csv(tmp_path / "out" / "index.csv")
    assert written["content"].tolist() == index["content"].tolist()
    names = ", ".join(
        str(twins / "images" / n)
        for n in sorted(["a0.png", "a0_bmp.bmp", "a0_copy.png", "a0_tif.tif"])
    )
    assert (
        logging.WARNING,
        f"identical images (the same pixels) under 4 names: {names}: "
        "kept together in one split (and fold); delete all but one unless that is meant",
    ) in log.lines


def test_verify_lists_identical_images(twins):
    summary = verify_dataset(twins, table={0: 0, 255: 1})
    assert [[Path(p).name for p in g] for g in summary["duplicate_images"]] == [
        ["a0.png", "a0_bmp.bmp", "a0_copy.png", "a0_tif.tif"]
    ]
    assert any(w.startswith("identical images") for w in summary["warnings"])
    assert summary["ok"]  # kept together: a warning, not a problem


def dup_index(n: int = 40, official: bool = False) -> pd.DataFrame:
    """n pairs in two groups; img000..img009 come as five twin pairs (2k, 2k + 1), and
    img010/img011 are identical across the two groups."""
    rows = []
    for i in range(n):
        content = f"sha256:{i // 2:04d}" if i < 10 else f"sha256:{i:04d}"
        if i in (10, 11):
            content = "sha256:cross"
        rows.append(
            {
                "id": f"img{i:03d}",
                "image": f"i/img{i:03d}.png",
                "mask": f"m/img{i:03d}.png",
                "group": "cat" if i % 2 else "dog",
                "official_split": ("test" if i % 5 == 0 else "trainval") if official else "",
                "height": 8,
                "width": 8,
                "content": content,
                "classes": "0 1",
            }
        )
    return pd.DataFrame(rows)


def where(parts: dict[str, pd.DataFrame]) -> dict[str, str]:
    return {i: name for name, frame in parts.items() for i in frame["id"]}


TWINS = [(f"img{2 * k:03d}", f"img{2 * k + 1:03d}") for k in range(6)]


@pytest.mark.parametrize("stratify", [True, False])
def test_identical_images_are_carved_into_one_split(stratify):
    index = dup_index()
    for seed in range(30):
        split = where(
            split_dataset(index, seed=seed, val_fraction=0.3, test_fraction=0.3, stratify=stratify)
        )
        assert len(split) == len(index)
        for a, b in TWINS:
            assert split[a] == split[b], (seed, a, b)


def test_twins_of_a_test_list_image_join_the_test_split_with_a_warning(caplog):
    index = dup_index(official=True)  # img000 and img010 are listed as test, their twins are not
    with caplog.at_level(logging.WARNING, logger="segpipe.data.split"):
        split = where(split_dataset(index, seed=0, val_fraction=0.2, test_fraction=0.2))
    for a, b in TWINS:
        assert split[a] == split[b]
    assert split["img001"] == split["img011"] == "test"
    assert "identical images ['img000', 'img001'] are in different split lists" in caplog.text
    assert "identical images ['img010', 'img011'] are in different split lists" in caplog.text


def test_an_index_without_content_splits_as_before():
    index = dup_index()
    with_column = split_dataset(
        index.assign(content=[f"u{i}" for i in range(40)]),
        seed=3,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    without = split_dataset(
        index.drop(columns="content"), seed=3, val_fraction=0.2, test_fraction=0.2
    )
    assert {k: list(v["id"]) for k, v in with_column.items()} == {
        k: list(v["id"]) for k, v in without.items()
    }


def test_identical_images_fall_into_one_fold():
    index = dup_index()
    for seed in range(20):
        folds = fold_assignment(index, folds=4, seed=seed)
        for a, b in TWINS:
            assert folds[a] == folds[b], (seed, a, b)


def test_fold_manifests_keep_twins_together(tmp_path):
    index = dup_index()
    index.to_csv(tmp_path / "index.csv", index=False)
    index.drop(columns=["content", "classes", "official_split"]).to_csv(
        tmp_path / "pool.csv", index=False
    )
    fold_of = {}
    for fold in range(3):
        out = {s: str(tmp_path / f"f{fold}_{s}.csv") for s in ("train", "val")}
        write_fold(
            str(tmp_path / "index.csv"),
            [str(tmp_path / "pool.csv")],
            fold,
            out,
            str(tmp_path / f"f{fold}_classes.csv"),
            class_names=["a", "b"],
            folds=3,
            seed=1,
        )
        fold_of.update(dict.fromkeys(pd.read_csv(out["val"])["id"], fold))
    for a, b in TWINS:
        assert fold_of[a] == fold_of[b]


def test_more_folds_than_distinct_images_names_the_copies():
    index = dup_index(6)  # three twin pairs
    with pytest.raises(ValueError, match="only 3 distinct images"):
        fold_assignment(index, folds=4, seed=0)


@pytest.fixture
def small(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        Image.fromarray(picture(i)).save(root / "images" / f"a{i}.png")
        Image.fromarray(half_mask(SIZE)).save(root / "masks" / f"a{i}.png")
    return root


def test_an_image_above_the_pixel_limit_is_one_quarantine_row(small, tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(small / "images" / "big.png")
    Image.fromarray(half_mask(20)).save(small / "masks" / "big.png")
    index, _ = run_remap(small, tmp_path / "out", threads=1, max_image_pixels=300)
    assert sorted(index["id"]) == ["a0", "a1", "a2"]
    rows = pd.read_csv(tmp_path / "out" / "quarantine.csv")
    assert rows.values.tolist() == [
        [
            str(small / "images" / "big.png"),
            "image too large: 20x20 = 400 pixels, more than dataset.max_image_pixels (300): not "
            "decoded (it would take 0 MB decoded); raise dataset.max_image_pixels (segpipe verify "
            "--max-image-pixels) to read it, or downscale it",
        ]
    ]


def test_a_mask_above_the_pixel_limit_is_one_problem(small):
    Image.fromarray(np.zeros((SIZE, 20), np.uint8)).save(small / "masks" / "a1.png")
    summary = verify_dataset(small, table={0: 0, 255: 1}, max_image_pixels=300)
    [problem] = summary["problems"]
    assert Path(problem["file"]).name == "a1.png"
    assert problem["problem"].startswith(
        "mask too large: 20x16 = 320 pixels, more than dataset.max_image_pixels (300)"
    )


def test_the_limit_replaces_pillows_own(small, monkeypatch):
    """Pillow's decompression-bomb limit (simulated small here) can be raised by the option."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 200 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = verify_dataset(small, table={0: 0, 255: 1}, max_image_pixels=1000)
    assert summary["ok"] and summary["pairs_usable"] == 3
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_a_real_decompression_bomb_is_a_row_without_a_library_warning(small, capsys):
    Image.fromarray(np.zeros((10_000, 10_000), np.uint8)).save(
        small / "images" / "huge.png", compress_level=1
    )
    Image.fromarray(half_mask(SIZE)).save(small / "masks" / "huge.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DecompressionBombWarning would fail here
        code = main(["verify", str(small), "--table", "0=0,255=1"])
    out = capsys.readouterr().out
    assert code != 0
    assert (
        f"{small / 'images' / 'huge.png'}: image too large: 10000x10000 = 100,000,000 pixels, "
        "more than dataset.max_image_pixels (89,478,485): not decoded (it would take 100 MB"
    ) in out
    assert main(["verify", str(small), "--table", "0=0,255=1", "--max-image-pixels", "10"]) != 0
    assert "more than dataset.max_image_pixels (10)" in capsys.readouterr().out


def test_steps_after_remap_read_images_that_remap_let_through(small, tmp_path, monkeypatch):
    """A raised dataset.max_image_pixels holds for preprocess, prediction and the report too:
    they read what remap checked, whatever Pillow's own limit (simulated small here)."""
    from segpipe.data.images import load_rgb
    from segpipe.data.masks import load_mask
    from segpipe.data.preprocess import _decode

    index, _ = run_remap(small, tmp_path / "out", threads=1, max_image_pixels=1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 200 pixels
    image, mask = index.loc[0, "image"], index.loc[0, "mask"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.asarray(load_rgb(image, None)).shape == (SIZE, SIZE, 3)
        assert load_mask(mask).shape == (SIZE, SIZE)
        assert _decode((image, mask, (8, 8))).shape == (8, 8, 4)


def test_segpipe_predict_names_an_image_above_the_limit(small):
    from segpipe.data.images import ImageTooLargeError, load_rgb
    from segpipe.inference.folder import unreadable_reason

    path = small / "images" / "a0.png"
    with pytest.raises(ImageTooLargeError) as caught:
        load_rgb(path, 100)
    assert unreadable_reason(path, caught.value) == (
        "too large to read: 16x16 pixels, more than 100 (not decoded)"
    )
