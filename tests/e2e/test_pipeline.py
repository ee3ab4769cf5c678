"""End-to-end runs of the workflow on the tiny config, and what a config change reruns."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from helpers.repo import copy_workflow, planned_rules, snakemake

pytestmark = pytest.mark.slow
TINY = "config/test.yaml"


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """One complete run of the tiny pipeline, shared by the tests of this module."""
    work = copy_workflow(tmp_path_factory.mktemp("pipeline"))
    proc = snakemake(work, "--configfile", TINY, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work


def variant(work: Path, name: str, edit) -> str:
    """Write a copy of the tiny config changed by ``edit(cfg)``; return its path for --configfile."""
    cfg = yaml.safe_load((work / TINY).read_text())
    edit(cfg)
    path = work / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path.relative_to(work))


@pytest.mark.check
def test_outputs_of_every_step(done_run: Path) -> None:
    r = done_run / "results" / "runs" / "ci-tiny"
    splits = done_run / "results" / "split" / "base"
    for split in ("train", "val", "test"):
        manifest = pd.read_csv(splits / f"{split}.csv")
        assert list(manifest.columns) == ["id", "image", "mask", "group", "height", "width"]
        assert len(manifest) > 0
    test = pd.read_csv(splits / "test.csv")
    for row in test.itertuples():
        pred = Image.open(r / "predict" / "test" / "masks" / f"{row.id}.png")
        assert pred.size == (row.width, row.height)  # original size, not the training size
    # predict.overlays: gallery: masks only for the splits, whose galleries the report draws
    assert not (r / "predict" / "test" / "overlays").exists()
    metrics = json.loads((r / "evaluate" / "test" / "metrics.json").read_text())
    assert metrics["n_images"] == len(test)
    assert set(metrics["per_class"]) == {"pet", "background", "border"}
    assert 0 <= metrics["mean_iou"] <= 1 and metrics["foreground_iou"] is not None
    history = pd.read_csv(r / "train" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    html = (r / "report" / "report.html").read_text()
    assert "segpipe CI run" in html and "data:image/png;base64," in html
    assert "<th>Run</th><td>ci-tiny</td>" in html
    durations = html.split('<table id="benchmarks">', 1)[1].split("</table>", 1)[0]
    for job in ("synthesize", "download", "preprocess (train)", "predict", "evaluate (test)"):
        assert f"<td>{job}</td>" in durations
    assert "report (this job" in durations and "n/a" not in durations  # every job, all measured
    for rule in ("download", "remap", "split", "train", "report"):
        assert list((done_run / "logs" / rule).iterdir()), f"no log for {rule}"
        assert list((done_run / "benchmarks" / rule).iterdir()), f"no benchmark for {rule}"


def test_nothing_to_do_after_complete_run(done_run: Path) -> None:
    assert planned_rules(done_run, "--configfile", TINY) == {}


@pytest.mark.parametrize(
    ("name", "edit", "expected"),
    [
        (
            "report_only",
            lambda c: c["report"].update(title="another title"),
            {"report"},
        ),
        (
            "evaluate_only",
            lambda c: c["evaluate"].update(foreground_classes=[0]),
            {"evaluate", "report"},
        ),
        (
            "split_seed",
            lambda c: c["split"].update(seed=7),
            {"split", "preprocess", "train", "predict", "evaluate", "report"},
        ),
        (
            # A download source's archives change: everything from the download on reruns.
            "synthetic_archives",
            lambda c: c["dataset"]["synthetic"].update(seed=5),
            {"synthesize", "download", "remap", "split", "preprocess", "train", "predict"}
            | {"evaluate", "report"},
        ),
        (
            "train_option",
            lambda c: c["train"].update(lr=0.01),
            {"train", "predict", "evaluate", "report"},
        ),
    ],
)
def test_a_change_reruns_exactly_the_rules_that_use_it(done_run, name, edit, expected) -> None:
    planned = planned_rules(done_run, "--configfile", variant(done_run, name, edit))
    assert set(planned) - {"all"} == expected


def test_snakemake_html_report(done_run: Path) -> None:
    proc = snakemake(done_run, "--configfile", TINY, "--report", "snakemake_report.html")
    assert proc.returncode == 0, proc.stderr[-4000:]
    html = (done_run / "snakemake_report.html").read_text()
    assert "confusion.png" in html and "learning_curves.png" in html


def test_bad_config_fails_before_any_job(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path)
    bad = variant(work, "bad", lambda c: c["train"].update(loss="bce"))
    proc = snakemake(work, "--configfile", bad, "--cores", "1")
    assert proc.returncode != 0
    assert "config option 'train.loss'" in proc.stderr and "ce+dice" in proc.stderr
    assert not (work / "results").exists()


def test_failed_rule_leaves_no_output(tmp_path: Path) -> None:
    """A remap table that misses trimap value 3 fails remap, naming a file and the value."""
    work = copy_workflow(tmp_path)
    bad = variant(work, "unmapped", lambda c: c["remap"].update(table={1: 0, 2: 1}))
    proc = snakemake(work, "--configfile", bad, "--cores", "1", "results/remap/index.csv")
    assert proc.returncode != 0
    log = (work / "logs" / "remap" / "remap.log").read_text()
    assert "mask values [3] are not in remap.table" in log and ".png" in log
    assert not (work / "results" / "remap" / "index.csv").exists()
    assert not (work / "results" / "remap" / "masks").exists()
    leftovers = (
        [p for p in (work / "results" / "remap").glob(".*")]
        if (work / "results" / "remap").exists()
        else []
    )
    assert leftovers == []
