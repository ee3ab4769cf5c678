"""Property: whatever a folder dataset holds (odd names, nested files, copies, broken links, stray
files, missing masks), indexing and checking it either fails with a clear error or accounts for
every file exactly once, and its split puts no image, and no copy of an image, in two splits."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from segpipe.data.dataset_layouts import index_dataset
from segpipe.data.remap import remap_dataset
from segpipe.data.split import SplitError, fold_assignment, split_dataset, units

SIZE = 8
FORMATS = {"png": "PNG", "bmp": "BMP", "tif": "TIFF"}
# Letters, an NFC 'é' and an NFD 'e' + combining acute, a space and a dot.
NAME = st.text(alphabet="ab\u00e9e\u0301 .", min_size=1, max_size=5).filter(
    lambda s: s.strip(".") and not s.startswith(".")
)
KINDS = ("pair", "pair", "image_only", "mask_only", "copy", "reencoded", "dangling", "stray")
ENTRY = st.tuples(
    st.sampled_from(KINDS),
    NAME,
    st.sampled_from(sorted(FORMATS)),
    st.integers(0, 3),  # pixels: few seeds, so that equal pixels come up by chance too
    st.sampled_from(["", "sub", "sub/deeper"]),  # nested below images/ or masks/
)


def pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def mask() -> np.ndarray:
    out = np.zeros((SIZE, SIZE), np.uint8)
    out[:, SIZE // 2 :] = 255
    return out


def write(root: Path, entries) -> None:
    """Write the entries' files; a name already taken is left as it is."""
    made: list[Path] = []
    for kind, name, ext, seed, sub in entries:
        images, masks = root / "images" / sub, root / "masks" / sub
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        image, its_mask = images / f"{name}.{ext}", masks / f"{name}.png"
        if os.path.lexists(image) or os.path.lexists(its_mask):
            continue
        if kind == "copy" and made:
            image = images / f"{name}{made[-1].suffix}"
            image.write_bytes(made[-1].read_bytes())
        elif kind == "dangling":
            image.symlink_to(root / "nowhere" / image.name)
        elif kind == "stray":
            (images / f"{name}.txt").write_text("notes")
            continue
        elif kind != "mask_only":
            Image.fromarray(pixels(seed)).save(image, format=FORMATS[ext])
            made.append(image)
        if kind != "image_only":
            Image.fromarray(mask()).save(its_mask)


def all_files(root: Path) -> list[str]:
    return sorted(
        os.path.join(parent, name)
        for parent, dirs, files in os.walk(root)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(parent, d))]
    )


def check_split(index: pd.DataFrame) -> None:
    try:
        parts = split_dataset(index, seed=0, val_fraction=0.25, test_fraction=0.25)
    except SplitError as exc:  # too few pairs: one line naming the options
        assert "every split needs a pair" in str(exc) and "\n" not in str(exc)
        return
    split_of = {}
    content_split = {}
    for name, part in parts.items():
        for image_id in part["id"]:
            assert image_id not in split_of, f"{image_id!r} in {split_of[image_id]} and {name}"
            split_of[image_id] = name
    assert sorted(split_of) == sorted(index["id"])
    for image_id, content in zip(index["id"], units(index), strict=True):
        assert content_split.setdefault(content, split_of[image_id]) == split_of[image_id]
    if units(index).nunique() >= 2:
        folds = fold_assignment(index, folds=2, seed=0)
        for key, group in index.groupby(units(index).to_numpy()):
            assert folds[group["id"]].nunique() == 1, key


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(ENTRY, min_size=1, max_size=8))
def test_every_file_is_accounted_for_once_and_copies_share_a_split(tmp_path_factory, entries):
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as tmp:
        root = Path(tmp) / "data"
        write(root, entries)
        files = all_files(root)
        frame, quarantine = index_dataset("folder", root)
        listed = [*frame["image"], *frame["raw_mask"], *(f for f, _ in quarantine)]
        assert sorted(listed) == files  # each file once: paired or quarantined with a reason
        out = Path(tmp) / "out"
        try:
            index = remap_dataset(
                root,
                out / "masks",
                out / "index.csv",
                out / "quarantine.csv",
                layout="folder",
                table={0: 0, 255: 1},
                max_quarantine_fraction=1.0,
            )
        except ValueError as exc:
            assert frame.empty and "no image/mask pairs found" in str(exc)
            return
        rows = pd.read_csv(out / "quarantine.csv", keep_default_na=False)
        assert sorted([*index["image"], *index["raw_mask"], *rows["file"]]) == files
        check_split(index)
