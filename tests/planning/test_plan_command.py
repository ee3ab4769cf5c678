"""``segpipe plan``: the files it writes and what it says, and bad input in one line (exit 2,
nothing written). The runs that reach the probe start a child process (slow tier)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from segpipe.cli import main
from segpipe.workflow.config import load_schema, validate_config

from helpers.repo import REPO

TINY = ["--device", "cpu", "--max-size", "32", "--memory-gb", "8"]


def dataset(root: Path, n: int = 12, *, size=(40, 48), mask=None) -> Path:
    """images/ and masks/ of ``n`` pairs: 0/255 masks with a bar across, or ``mask(i)``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = size
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(
            root / "images" / f"{i:02d}.png"
        )
        m = np.full((h, w), 255, np.uint8)
        m[10 + i % 5 : 16 + i % 5] = 0
        Image.fromarray(m if mask is None else mask(i)).save(root / "masks" / f"{i:02d}.png")
    return root


@pytest.mark.slow
def test_plan_writes_a_config_that_validates_and_its_fingerprint(tmp_path, monkeypatch, capsys):
    root = dataset(tmp_path / "my cells")
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(root), "--classes", "membrane,cell", *TINY]) == 0
    out = capsys.readouterr().out
    config, fingerprint = Path("my-cells.yaml"), Path("my-cells.fingerprint.json")
    assert f"wrote {config} (the planned config) and {fingerprint}" in out
    assert f"run it: snakemake --configfile {config} --cores all" in out
    cfg = validate_config(
        yaml.safe_load(config.read_text()), load_schema(REPO / "config/schema.yaml")
    )
    assert cfg["classes"] == ["membrane", "cell"] and cfg["run_name"] == "my-cells"
    assert cfg["dataset"]["root"] == str(root) and cfg["train"]["image_size"] == 32
    fp = json.loads(fingerprint.read_text())
    assert fp["pairs"]["usable"] == 12 and fp["probe"]["trials"][0]["measured"]
    assert "# " in config.read_text().splitlines()[0]


@pytest.mark.slow
def test_a_partial_config_gives_the_dataset_labels_and_names(tmp_path, monkeypatch):
    root = dataset(tmp_path / "d")
    partial = tmp_path / "partial.yaml"
    partial.write_text(
        yaml.safe_dump(
            {
                "dataset": {"source": "folder", "root": str(root), "name": "My cells"},
                "classes": ["membrane", "cell"],
                "remap": {"table": {0: 0, 255: 1}},
            }
        )
    )
    out = tmp_path / "planned.yaml"
    assert main(["plan", "--configfile", str(partial), "-o", str(out), *TINY]) == 0
    cfg = yaml.safe_load(out.read_text())
    assert cfg["dataset"]["name"] == "My cells" and cfg["run_name"] == "My-cells"
    assert cfg["remap"]["table"] == {0: 0, 255: 1} and cfg["classes"] == ["membrane", "cell"]
    assert (tmp_path / "planned.fingerprint.json").is_file()


@pytest.mark.slow
def test_every_image_a_different_size_and_mode_still_plans(tmp_path, monkeypatch):
    root = dataset(tmp_path / "d", n=6)
    modes = ["L", "P", "RGBA", "1", "I;16", "RGB"]
    for i, mode in enumerate(modes):
        h, w = 30 + 11 * i, 70 - 6 * i
        Image.new(mode, (w, h)).save(root / "images" / f"{i:02d}.png")
        m = np.full((h, w), 255, np.uint8)
        m[5:12] = 0
        Image.fromarray(m).save(root / "masks" / f"{i:02d}.png")
    out = tmp_path / "p.yaml"
    assert main(["plan", str(root), "-o", str(out), *TINY]) == 0
    assert yaml.safe_load(out.read_text())["train"]["resize"] == "keep_aspect"


@pytest.mark.slow
def test_an_unreadable_file_is_a_quarantine_row_and_the_plan_goes_on(tmp_path):
    root = dataset(tmp_path / "d", n=10)
    (root / "images" / "03.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "p.yaml"
    assert main(["plan", str(root), "-o", str(out), *TINY]) == 0
    fp = json.loads((tmp_path / "p.fingerprint.json").read_text())
    assert [Path(q["file"]).name for q in fp["quarantine"]] == ["03.png"]
    assert "1 of 10 pairs read are unusable" in out.read_text()


@pytest.mark.slow
def test_a_large_dataset_is_read_as_a_sample_and_the_config_says_so(tmp_path):
    root = dataset(tmp_path / "d", n=30, size=(20, 20))
    out = tmp_path / "p.yaml"
    assert main(["plan", str(root), "-o", str(out), "--sample", "10", *TINY]) == 0
    text = out.read_text()
    assert "a seeded sample of 10 of its 30 pairs (seed 0)" in text
    assert json.loads((tmp_path / "p.fingerprint.json").read_text())["sample"]["of"] == 30


def intensities(i: int) -> np.ndarray:
    """A photo saved as a mask: every grey level."""
    return np.random.default_rng(i).integers(0, 256, (40, 48), dtype=np.uint8)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: dataset(root, n=0), "no image/mask pairs found"),
        (lambda root: dataset(root, n=1), "1 usable pair(s) of 1: at least 5 are needed"),
        (
            lambda root: dataset(root, mask=lambda i: np.zeros((40, 47), np.uint8)),
            "0 usable pair(s) of 12: at least 5 are needed (2 to train, 1 to validate, 1 to "
            "test); 12 problem(s), the first: {root}/masks/00.png: mask 47x40 and image 48x40 "
            "differ in size (segpipe verify with the same dataset options lists them all)",
        ),
        (
            lambda root: (dataset(root, n=0), (root / "images" / "notes.txt").write_text("x"))[0],
            "no image/mask pairs found (0 unpaired files, 1 stray files); 1 problem(s), the "
            "first: {root}/images/notes.txt: ",
        ),
        (lambda root: dataset(root, mask=intensities), "in the median mask: intensity images"),
        (
            lambda root: dataset(root, mask=lambda i: np.zeros((40, 48), np.uint8)),
            "a single class value",
        ),
        (lambda root: root, "no such folder"),
        (lambda root: (root.write_text("x"), root)[1], "is a file, not a dataset folder"),
    ],
    ids=[
        "no-pairs",
        "one-pair",
        "sizes-differ",
        "strays-only",
        "intensities",
        "one-value",
        "missing",
        "a-file",
    ],
)
def test_bad_datasets_end_in_one_line_and_write_nothing(tmp_path, capsys, make, message):
    root = make(tmp_path / "d")
    out = tmp_path / "p.yaml"
    assert main(["plan", str(root), "-o", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    message = message.format(root=root)
    assert err.count("\n") == 1 and message in err and err.startswith("segpipe plan: error:"), err
    assert not out.exists() and not (tmp_path / "p.fingerprint.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["-o", "{exists}"], "--out {exists}: exists; --overwrite replaces it"),
        (["-o", "{folder}"], "--out {folder}: is a folder; give a file name"),
        (["-o", "{inside}"], "--out {inside} lies inside the dataset"),
        (["-o", "{exists}", "--overwrite"], "a file that is not a config segpipe plan wrote"),
        (["-o", "{x}", "--fingerprint", "{exists}", "--overwrite"], "not a fingerprint segpipe"),
        (["-o", "{x}", "--fingerprint", "{x}"], "--out and --fingerprint are one file"),
        (["--max-size", "100"], "--max-size 100: a multiple of 32, at least 32"),
        (["--memory-gb", "0"], "--memory-gb must be above 0"),
        (["--configfile", "{train}"], "train are planned, not read; give only dataset, classes"),
        (["--configfile", "{oxford}"], "dataset.source oxford_pets: segpipe plan reads a folder"),
        (["--table", "0=0"], "values [255] that the given remap table neither maps nor ignores"),
    ],
)
def test_bad_options_end_in_one_line(tmp_path, capsys, args, message):
    root = dataset(tmp_path / "d", n=6)
    paths = {
        "exists": tmp_path / "exists.yaml",
        "folder": tmp_path / "folder",
        "inside": root / "planned.yaml",
        "x": tmp_path / "x.yaml",
        "train": tmp_path / "train.yaml",
        "oxford": tmp_path / "oxford.yaml",
    }
    paths["exists"].write_text("run_name: mine\n")
    paths["folder"].mkdir()
    paths["train"].write_text(yaml.safe_dump({"dataset": {"root": str(root)}, "train": {"lr": 1}}))
    paths["oxford"].write_text(yaml.safe_dump({"dataset": {"source": "oxford_pets"}}))
    args = [a.format(**paths) for a in args]
    size = [] if "--max-size" in args else ["--max-size", "32"]
    code = main(["plan", str(root), "--device", "cpu", *size, *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert message.format(**paths) in err
    assert paths["exists"].read_text() == "run_name: mine\n"
