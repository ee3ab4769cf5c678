"""``segpipe verify``: the dataset check before training (counts, sizes, formats, class pixel
shares, warnings, problems), as a function and as the console command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.cli import main
from segpipe.data.verify import format_summary, verify_dataset

from helpers.remap import tree_digest
from helpers.repo import BIN, REPO


def build(root: Path) -> Path:
    """4 good pairs (one a greyscale PNG named .jpg), a truncated image, a stray file, an
    image without a mask; masks {0, 255} with a quarter of 255."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[:10, :15] = 255
    for i in range(4):
        Image.new("RGB", (30, 20), (i, 2, 3)).save(root / "images" / f"ok{i}.jpg")
        Image.fromarray(mask).save(root / "masks" / f"ok{i}.png")
    Image.new("L", (30, 20), 7).save(root / "images" / "ok3.jpg", format="PNG")
    Image.new("RGB", (40, 40)).save(root / "images" / "big.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks" / "big.png")
    data = (root / "images" / "big.png").read_bytes()
    (root / "images" / "big.png").write_bytes(data[: len(data) // 2])
    (root / "images" / "notes.mat").write_bytes(b"MATLAB")
    Image.new("RGB", (30, 20)).save(root / "images" / "lonely.jpg")
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return build(tmp_path / "data")


def test_summary_counts_sizes_formats_and_class_shares(dataset):
    before = tree_digest(dataset)
    s = verify_dataset(dataset, table={0: 0, 255: 1}, class_names=["background", "cell"])
    assert tree_digest(dataset) == before  # nothing written or changed
    assert (s["pairs_found"], s["pairs_usable"], s["pairs_unusable"]) == (5, 4, 1)
    assert (s["unpaired_files"], s["stray_files"]) == (1, 1)
    assert s["image_formats"] == {"JPEG RGB": 3, "PNG L": 1}
    assert s["image_sizes"] == {"30x20": 4}
    assert [(c["value"], c["name"], c["share"]) for c in s["classes"]] == [
        (0, "background", 0.75),
        (1, "cell", 0.25),
    ]
    assert [v["value"] for v in s["mask_values"]] == ["0", "255"]
    problems = {Path(p["file"]).name: p["problem"] for p in s["problems"]}
    assert set(problems) == {"big.png", "notes.mat", "lonely.jpg"}
    assert problems["big.png"].startswith("unreadable image")
    assert any("ok3.jpg: is really PNG (mode L), named .jpg" in w for w in s["warnings"])
    assert not s["ok"]

    text = format_summary(s)
    for line in (
        "Pairs: 5 found, 4 usable, 1 unusable; 1 unpaired files, 1 stray files",
        "Image formats (from content): JPEG RGB 3, PNG L 1",
        "Image sizes (WxH): 30x20 4; width 30, height 20",
        "Mask values (share of pixels): 0 75.0%, 255 25.0%",
        "Classes (share of pixels): 0 background 75.0%, 1 cell 25.0%",
        "Problems (3):",
        "Verdict: 3 problem(s)",
    ):
        assert line in text, text


def test_without_a_table_raw_values_are_counted(dataset):
    s = verify_dataset(dataset)
    assert s["classes"] == []
    assert [(v["value"], v["share"]) for v in s["mask_values"]] == [("0", 0.75), ("255", 0.25)]


def test_unmapped_values_are_problems_not_errors(dataset):
    s = verify_dataset(dataset, table={0: 0})
    unmapped = [
        p for p in s["problems"] if "mask values [255] are not in remap.table [0]" in p["problem"]
    ]
    assert len(unmapped) == 4


def test_cli_exit_status_output_and_json(dataset, tmp_path, capsys):
    out_json = tmp_path / "summary.json"
    rc = main(
        [
            "verify",
            str(dataset),
            "--table",
            "0=0,255=1",
            "--classes",
            "bg,cell",
            "--json",
            str(out_json),
        ]
    )
    assert rc == 1
    printed = capsys.readouterr().out
    assert "Classes (share of pixels): 0 bg 75.0%, 1 cell 25.0%" in printed
    assert "notes.mat: not an image file (suffix .mat)" in printed
    assert json.loads(out_json.read_text())["pairs_usable"] == 4

    for name in ("notes.mat", "lonely.jpg", "big.png"):
        (dataset / "images" / name).unlink()
    (dataset / "masks" / "big.png").unlink()
    assert main(["verify", str(dataset), "--table", "0=0", "--table", "255=1"]) == 0
    assert "Verdict: OK" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "missing")]) == 2
    assert f"dataset.root {tmp_path / 'missing'}: no such folder" in capsys.readouterr().err
    assert main(["verify", str(tmp_path)]) == 2
    assert f"image directory not found: {tmp_path / 'images'} (dataset.images_dir)" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as exc:
        main(["verify", str(tmp_path), "--table", "a=b"])
    assert exc.value.code == 2
    assert "--table: 'a=b' is not RAW=CLASS" in capsys.readouterr().err


def test_cli_colour_table_and_voc_layout(tmp_path, capsys):
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "JPEGImages" / "a.jpg")
    mask = Image.new("P", (8, 8), 1)
    mask.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    mask.save(root / "SegmentationClass" / "a.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("a\n")
    rc = main(
        ["verify", "--layout", "voc", str(root), "--color", "128,0,0=1", "--color", "0,0,0=0"]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "Mask values (share of pixels): [128, 0, 0] 100.0%" in out
    assert "Official split lists: trainval 1" in out


@pytest.mark.slow
@pytest.mark.shared_data
def test_console_script_with_an_example_config(shared_data):
    """The installed `segpipe` command, with an example config's dataset and remap table."""
    exe = BIN / "segpipe"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "segpipe.cli"]
    proc = subprocess.run(
        [
            *cmd,
            "verify",
            "--configfile",
            "config/examples/membrane_mini_unet.yaml",
            str(shared_data / "isbi2012_membrane" / "train"),
            "--threads",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Pairs: 30 found, 30 usable, 0 unusable" in proc.stdout
    assert "Image formats (from content): PNG L 30" in proc.stdout
    assert "Image sizes (WxH): 512x512 30" in proc.stdout
    assert "Classes (share of pixels): 0 membrane 2" in proc.stdout  # about 22 %
    assert "Verdict: OK" in proc.stdout


def test_every_warning_verify_logs_is_counted_in_its_summary_and_verdict(tmp_path, caplog):
    """An id in two lists, pairs in no list, a file in a sub-folder: each logged warning is one
    of the summary's warnings, in its count and its verdict ("..., 8 warning(s)")."""
    root = tmp_path / "data"
    (root / "images" / "extra").mkdir(parents=True)
    (root / "masks").mkdir()
    for name in ("a", "b", "c", "d"):
        Image.new("RGB", (8, 8)).save(root / "images" / f"{name}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / f"{name}.png")
    Image.new("RGB", (8, 8)).save(root / "images" / "extra" / "e.png")
    (root / "trainval.txt").write_text("a\nb\n")
    (root / "test.txt").write_text("b\nc\n")
    lists = {"trainval": "trainval.txt", "test": "test.txt"}
    caplog.set_level("WARNING")
    s = verify_dataset(root, table={0: 0}, split_lists=lists)
    logged = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert logged and set(logged) <= set(s["warnings"])
    assert "'b' is in both the trainval and the test list" in s["warnings"]
    assert any("1 pairs are in none of the split lists" in w for w in s["warnings"])
    assert any("sub-folder 'extra/'" in w for w in s["warnings"])
    text = format_summary(s)
    assert f"Warnings ({len(s['warnings'])}):" in text
    # The file in a sub-folder is a problem too (quarantined, not read).
    assert text.endswith(f"Verdict: 1 problem(s), {len(s['warnings'])} warning(s)")
    # With no warning the verdict is the plain OK.
    assert format_summary({**s, "warnings": []}).endswith("Verdict: 1 problem(s)")
    assert format_summary({**s, "warnings": [], "ok": True}).endswith("Verdict: OK")


def test_the_remap_steps_summary_counts_the_warnings_of_indexing_too(tmp_path):
    from helpers.remap import run_remap

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 255
    for i, name in enumerate(("a", "b", "c", "d")):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    (root / "trainval.txt").write_text("a\nb\nc\n")
    (root / "test.txt").write_text("c\nd\n")
    lists = {"trainval": "trainval.txt", "test": "test.txt"}
    _, log = run_remap(root, tmp_path / "out", split_lists=lists, threads=1)
    (summary,) = [m for _, m in log.lines if m.startswith("dataset summary:")]
    assert "'c' is in both the trainval and the test list" in summary
    assert summary.endswith("Verdict: OK, 1 warning(s)")
