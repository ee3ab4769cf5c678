"""Own data in two commands: ``segpipe plan`` on the shared ISBI membranes and CamVid scenes and
on the synthetic Oxford-layout data, then ``snakemake --configfile <planned>`` to the report.

Tiny scale: the plan is asked for 32-pixel inputs (``--max-size 32``) and the run adds one small
file after the planned one (one epoch, a small image scale, a larger predict batch) so it takes
seconds per job; the planned file itself is what runs, and its dry run without that file is
checked too. No report may name a dataset that is not the one planned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from segpipe.data.synthetic import make_oxford_like

from helpers.example_runs import camvid_pairs
from helpers.repo import BIN, REPO, copy_workflow, planned_rules, snakemake

pytestmark = pytest.mark.slow
TINY_PLAN = ["--device", "cpu", "--max-size", "32", "--memory-gb", "8", "--threads", "2"]


def plan(work: Path, root: Path, *args: str) -> Path:
    """``segpipe plan`` in the workflow copy; the planned config's path."""
    import subprocess

    out = work / "config" / "planned.yaml"
    proc = subprocess.run(
        [str(BIN / "segpipe"), "plan", str(root), "-o", "config/planned.yaml", *TINY_PLAN, *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "run it: snakemake --configfile config/planned.yaml --cores all" in proc.stdout
    return out


def run_planned(work: Path, planned: Path, split: dict | None = None, **tiny) -> dict:
    """The planned config as written (a dry run), then run to its report with ``tiny`` (and
    ``split``) on top; the planned config, read."""
    cfg = yaml.safe_load(planned.read_text())
    assert planned_rules(work, "--configfile", "config/planned.yaml").get("train")
    overlay = {"train": {"epochs": 1, **tiny}, "predict": {"batch_size": 32}}
    if split:
        overlay["split"] = split
    (work / "config" / "tiny.yaml").write_text(yaml.safe_dump(overlay))
    proc = snakemake(
        work,
        "--configfile",
        "config/planned.yaml",
        "config/tiny.yaml",
        "--cores",
        "2",
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-8000:]
    run = work / "results" / "runs" / cfg["run_name"]
    html = (run / "report" / "report.html").read_text()
    assert cfg["dataset"]["name"] in html and "Oxford-IIIT Pet" not in html
    return cfg


def test_planned_isbi_membranes_run_to_their_report(shared_data, tmp_path):
    work = copy_workflow(tmp_path / "wf")
    root = shared_data / "isbi2012_membrane" / "train"
    planned = plan(
        work, root, "--images-dir", "image", "--masks-dir", "label", "--classes", "membrane,cell"
    )
    # The plan cross-validates these 30 images in 5 folds (checked on the planned file and its
    # dry run); 2 of them train here, which is what running a planned cross-validation checks.
    assert planned_rules(work, "--configfile", "config/planned.yaml")["train"] == 5
    cfg = run_planned(work, planned, split={"folds": 2}, image_scale=0.125)
    assert cfg["classes"] == ["membrane", "cell"] and cfg["remap"]["table"] == {0: 0, 255: 1}
    assert cfg["split"]["folds"] == 5 and cfg["train"]["resize"] == "keep_aspect"
    crossval = work / "results" / "runs" / cfg["run_name"] / "crossval" / "metrics.json"
    assert json.loads(crossval.read_text())


def test_planned_camvid_scenes_run_to_their_report(shared_data, tmp_path):
    camvid = tmp_path / "camvid"
    for sub in ("train", "trainannot"):
        (camvid / sub).mkdir(parents=True)
    # 40 scenes: 32 to train and validate, at least the 30 below which a plan cross-validates
    # (the membranes' test covers folds), so one model trains here.
    for image, mask in camvid_pairs(shared_data, "train", 40):
        (camvid / "train" / image.name).symlink_to(image)
        (camvid / "trainannot" / mask.name).symlink_to(mask)
    work = copy_workflow(tmp_path / "wf")
    planned = plan(
        work,
        camvid,
        "--images-dir",
        "train",
        "--masks-dir",
        "trainannot",
        "--ignore-value",
        "11",
        "--name",
        "CamVid",
    )
    cfg = run_planned(work, planned, image_scale=0.1)
    table = cfg["remap"]["table"]  # the ids found in these 40 scenes, void (11) ignored
    assert cfg["remap"]["ignore_value"] == 11 and 11 not in table
    assert list(table.values()) == list(range(len(cfg["classes"]))) and len(table) >= 8
    assert cfg["train"]["loss"] == "ce+dice" and cfg["train"]["resize"] == "keep_aspect"
    assert cfg["split"]["folds"] is None
    metrics = work / "results" / "runs" / "CamVid" / "evaluate" / "test" / "metrics.json"
    assert json.loads(metrics.read_text())["mean_iou"] >= 0


def test_planned_synthetic_oxford_layout_runs_to_its_report(tmp_path):
    make_oxford_like(tmp_path / "pets", n_images=48, seed=1, min_size=40, max_size=56)
    work = copy_workflow(tmp_path / "wf")
    planned = plan(work, tmp_path / "pets", "--layout", "oxford", "--name", "pets")
    cfg = run_planned(work, planned)
    assert cfg["remap"]["table"] == {1: 0, 2: 1, 3: 2} and cfg["split"]["use_official"]
    assert cfg["split"]["folds"] is None  # 36 pairs to train and validate: one model
    assert cfg["run_name"] == "pets"
    assert "official lists" in planned.read_text()
    assert not (REPO / "config" / "planned.yaml").exists()
