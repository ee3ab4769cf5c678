"""A user's folder dataset is an input file by file: what changes inside it reruns remap and all
that follows, and nothing else; an untouched dataset leaves nothing to do."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from segpipe.data.synthetic import make_oxford_like

from helpers.repo import copy_workflow, planned_rules, snakemake

pytestmark = pytest.mark.slow
CONFIG = "config/folder.yaml"
FROM_REMAP = {"remap", "split", "preprocess", "train", "predict", "evaluate", "report"}


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """A complete tiny run on a local Oxford-layout folder (images, trimaps and split lists)."""
    work = copy_workflow(tmp_path_factory.mktemp("folder-run"))
    make_oxford_like(work / "data", n_images=16, seed=3, min_size=32, max_size=40)
    cfg = yaml.safe_load((work / "config" / "test.yaml").read_text())
    cfg["dataset"] = {"source": "folder", "root": "data", "layout": "oxford", "name": "pets"}
    cfg["train"]["epochs"] = 1
    (work / CONFIG).write_text(yaml.safe_dump(cfg))
    proc = snakemake(work, "--configfile", CONFIG, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work


@pytest.fixture
def work(done_run: Path, tmp_path: Path) -> Path:
    """A copy of the finished run (timestamps and Snakemake's records kept) to change freely."""
    dest = tmp_path / "work"
    shutil.copytree(done_run, dest, symlinks=True)
    return dest


def _first(folder: Path) -> Path:
    return sorted(folder.iterdir())[0]


def edit_mask(data: Path) -> None:
    mask = _first(data / "annotations" / "trimaps")
    values = np.array(Image.open(mask))
    values[0, 0] = 3 if values[0, 0] != 3 else 2
    Image.fromarray(values).save(mask)


def edit_image(data: Path) -> None:
    image = _first(data / "images")
    pixels = np.array(Image.open(image))
    Image.fromarray(255 - pixels).save(image, format="JPEG")


def add_pair(data: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
    Image.fromarray(image).save(data / "images" / "Added_1.jpg")
    Image.fromarray(rng.integers(1, 4, (36, 36), dtype=np.uint8)).save(
        data / "annotations" / "trimaps" / "Added_1.png"
    )


def remove_pair(data: Path) -> None:
    image = _first(data / "images")
    image.unlink()
    (data / "annotations" / "trimaps" / f"{image.stem}.png").unlink()


def rename_pair(data: Path) -> None:
    """A rename keeps the files' timestamps: only the set of input files tells."""
    image = _first(data / "images")
    mask = data / "annotations" / "trimaps" / f"{image.stem}.png"
    image.rename(image.with_name(f"Renamed_{image.name}"))
    mask.rename(mask.with_name(f"Renamed_{mask.name}"))


def edit_test_list(data: Path) -> None:
    test_list = data / "annotations" / "test.txt"
    lines = test_list.read_text().splitlines(keepends=True)
    (data / "annotations" / "trainval.txt").open("a").write(lines[0])
    test_list.write_text("".join(lines[1:]))


@pytest.mark.parametrize(
    "change", [edit_mask, edit_image, add_pair, remove_pair, rename_pair, edit_test_list]
)
def test_a_dataset_change_reruns_remap_and_all_that_follows(work: Path, change) -> None:
    change(work / "data")
    planned = planned_rules(work, "--configfile", CONFIG)
    assert set(planned) - {"all"} == FROM_REMAP, planned
    assert planned["remap"] == 1


def test_an_untouched_dataset_leaves_nothing_to_do(done_run: Path) -> None:
    assert planned_rules(done_run, "--configfile", CONFIG) == {}


def test_files_that_remap_does_not_read_change_nothing(work: Path) -> None:
    (work / "data" / "README.txt").write_text("notes about the dataset\n")
    (work / "data" / "annotations" / "xmls").mkdir()
    assert planned_rules(work, "--configfile", CONFIG) == {}


def test_a_rerun_after_an_edit_uses_the_new_mask(work: Path) -> None:
    """Not only planned: the rerun reads the edited file (remap's index lists the added pair)."""
    add_pair(work / "data")
    proc = snakemake(work, "--configfile", CONFIG, "--cores", "2", "results/remap/index.csv")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Added_1" in (work / "results" / "remap" / "index.csv").read_text()
