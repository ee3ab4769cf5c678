"""The fingerprint of datasets made by the tests: each mask kind, sampling, quarantine, split
lists, and no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.data.dataset_layouts import SplitListError
from segpipe.planning.fingerprint import fingerprint_dataset


def pairs(root: Path, masks: list[np.ndarray], *, size=None, image_mode="RGB") -> Path:
    """images/ and masks/ of one image per mask (its size, or ``size``), named 00, 01, ..."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, mask in enumerate(masks):
        h, w = mask.shape[:2]
        rgb = np.full((h, w, 3), 40 * (i % 5), np.uint8)
        Image.fromarray(rgb).convert(image_mode).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return root


def binary(h=32, w=48, strip=3) -> np.ndarray:
    mask = np.full((h, w), 255, np.uint8)
    mask[10 : 10 + strip, :] = 0
    return mask


def values_of(fp: dict) -> dict:
    return {json.dumps(v["value"]): v for v in fp["values"]}


def test_binary_masks_give_values_shares_sizes_and_structure_widths(tmp_path):
    root = pairs(tmp_path / "d", [binary(), binary(48, 32), binary(), binary(strip=5)])
    fp = fingerprint_dataset(root)
    assert fp["pairs"] == {
        "found": 4,
        "read": 4,
        "usable": 4,
        "unusable": 0,
        "unpaired_files": 0,
        "stray_files": 0,
    }
    assert fp["sample"] is None and fp["masks"]["encoding"] == "values"
    assert fp["masks"]["kind"] == "binary 0/255"
    assert fp["images"]["width"]["min"] == 32 and fp["images"]["width"]["max"] == 48
    assert fp["images"]["aspect"]["max"] == 1.5 and fp["images"]["modes"] == {"RGB": 4}
    found = values_of(fp)
    assert set(found) == {"0", "255"} and found["0"]["image_share"] == 1.0
    assert found["0"]["structures"]["width"]["p5"] == 3
    assert found["0"]["structures"]["short_side"]["median"] == 3
    assert abs(sum(v["share"] for v in fp["values"]) - 1) < 1e-6


def test_colour_masks_are_read_as_colours(tmp_path):
    mask = np.zeros((20, 20, 3), np.uint8)
    mask[:, 10:] = (128, 0, 0)
    root = pairs(tmp_path / "d", [mask, mask])
    fp = fingerprint_dataset(root)
    assert fp["masks"]["encoding"] == "colours" and fp["masks"]["modes"] == {"RGB": 2}
    assert fp["masks"]["kind"] == "RGB colours"
    assert [v["value"] for v in fp["values"]] == [[0, 0, 0], [128, 0, 0]]
    assert fp["values"][1]["structures"]["width"]["median"] == 10  # cut by the edge


def test_grey_masks_saved_as_rgb_are_values(tmp_path):
    grey = np.stack([binary()] * 3, axis=-1)
    fp = fingerprint_dataset(pairs(tmp_path / "d", [grey, binary()]))
    assert fp["masks"]["encoding"] == "values"
    assert [v["value"] for v in fp["values"]] == [0, 255]


def test_colour_and_grey_masks_together_are_mixed(tmp_path):
    colour = np.zeros((20, 20, 3), np.uint8)
    colour[:, 10:] = (0, 200, 0)
    fp = fingerprint_dataset(pairs(tmp_path / "d", [colour, binary()]))
    assert fp["masks"]["encoding"] == "mixed"


def test_palette_masks_give_indices_and_their_colours(tmp_path):
    root = pairs(tmp_path / "d", [np.zeros((16, 16), np.uint8)])
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8] = 1
    mask[0] = 255
    img = Image.fromarray(mask, mode="L").convert("P")
    img.putpalette([0, 0, 0, 128, 0, 0] + [0] * 759 + [224, 224, 192])
    img.save(root / "masks" / "00.png")
    fp = fingerprint_dataset(root)
    assert [v["value"] for v in fp["values"]] == [0, 1, 255]
    assert fp["masks"]["palette"] == {"0": [0, 0, 0], "1": [128, 0, 0], "255": [224, 224, 192]}
    assert fp["masks"]["kind"] == "palette indices"


def test_16_bit_values_are_kept(tmp_path):
    mask = np.full((16, 16), 1000, np.uint16)
    mask[:8] = 3
    fp = fingerprint_dataset(pairs(tmp_path / "d", [mask]))
    assert [v["value"] for v in fp["values"]] == [3, 1000]
    assert fp["masks"]["kind"] == "grey levels"


def test_intensity_masks_are_counted_not_measured(tmp_path):
    ramp = np.tile(np.arange(200, dtype=np.uint8), (20, 1))
    fp = fingerprint_dataset(pairs(tmp_path / "d", [ramp]))
    assert fp["masks"]["distinct_per_mask"]["median"] == 200
    assert fp["masks"]["measured"] is False and fp["values"][0]["structures"] is None
    assert fp["masks"]["kind"] == "intensities"


def test_a_large_dataset_is_read_as_a_seeded_sample(tmp_path):
    root = pairs(tmp_path / "d", [binary(16 + i, 20) for i in range(12)])
    fp = fingerprint_dataset(root, sample=5, seed=3)
    assert fp["sample"] == {"pairs": 5, "of": 12, "seed": 3}
    assert fp["pairs"]["read"] == 5 and fp["pairs"]["found"] == 12
    again = fingerprint_dataset(root, sample=5, seed=3)
    assert again["images"] == fp["images"]
    assert fingerprint_dataset(root, sample=0)["pairs"]["read"] == 12


def test_unusable_files_are_quarantine_rows(tmp_path):
    root = pairs(tmp_path / "d", [binary()] * 3)
    (root / "images" / "01.png").write_bytes(b"not an image")
    (root / "masks" / "09.png").write_bytes((root / "masks" / "00.png").read_bytes())
    fp = fingerprint_dataset(root, threads=2)
    assert fp["pairs"]["usable"] == 2 and fp["pairs"]["unusable"] == 1
    assert fp["pairs"]["unpaired_files"] == 1
    problems = {Path(p["file"]).name: p["problem"] for p in fp["quarantine"]}
    assert problems["01.png"].startswith("unreadable image")
    assert problems["09.png"].startswith("no image for this mask")


def test_images_of_every_size_and_mode(tmp_path):
    masks = [binary(10 + 7 * i, 60 - 5 * i) for i in range(6)]
    root = pairs(tmp_path / "d", masks)
    for i, mode in enumerate(["L", "P", "RGBA", "CMYK", "1", "I;16"]):
        h, w = masks[i].shape
        (root / "images" / f"{i:02d}.png").unlink()
        suffix = "tif" if mode == "CMYK" else "png"
        Image.new(mode, (w, h)).save(root / "images" / f"{i:02d}.{suffix}")
    fp = fingerprint_dataset(root)
    assert fp["pairs"]["usable"] == 6
    assert fp["images"]["modes"] == dict.fromkeys(["L", "P", "RGBA", "CMYK", "1", "I;16"], 1)
    assert fp["images"]["channels"] == {"1": 4, "4": 2}
    assert fp["images"]["height"]["min"] == 10 and fp["images"]["height"]["max"] == 45


def test_split_lists_are_counted_and_a_line_naming_no_pair_stops(tmp_path):
    root = pairs(tmp_path / "d", [binary()] * 6)
    (root / "test.txt").write_text("00\n01\n")
    fp = fingerprint_dataset(root, split_lists={"test": "test.txt"})
    assert fp["split_lists"] == {"(in no list)": 4, "test": 2}
    (root / "test.txt").write_text("00\nnope\n")
    with pytest.raises(SplitListError, match="nope"):
        fingerprint_dataset(root, split_lists={"test": "test.txt"})


def test_duplicates_are_grouped(tmp_path):
    root = pairs(tmp_path / "d", [binary()] * 3)
    (root / "images" / "02.png").write_bytes((root / "images" / "00.png").read_bytes())
    assert len(fingerprint_dataset(root)["duplicates"]) == 1


def test_the_fingerprint_imports_no_torch(tmp_path):
    root = pairs(tmp_path / "d", [binary()] * 2)
    code = (
        "import json, sys\nfrom segpipe.planning.fingerprint import fingerprint_dataset\n"
        "import segpipe.planning.planner\n"
        f"fingerprint_dataset({str(root)!r})\n"
        "print(json.dumps([m for m in ('torch', 'segmentation_models_pytorch') if m in sys.modules]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []
