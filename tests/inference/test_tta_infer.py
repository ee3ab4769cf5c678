"""Flip TTA in the pipeline (predict.tta: the scores with and without the flips) and the
prediction of a folder of new images (infer.images) with the trained or selected model."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from segpipe.data.arrays import ArrayDataset
from segpipe.evaluation.selection import selected_run, validation_score
from segpipe.inference.folder import InferError, predict_folder
from segpipe.inference.predict_selected import predict_selected
from segpipe.inference.predict_splits import PredictOptions, predict_split
from segpipe.models.checkpoints import load_checkpoint, model_from_checkpoint
from segpipe.models.device import prepare_batch
from segpipe.reporting.run_report import ReportInputs, build_report
from segpipe.workflow.config import ConfigError, load_schema, validate_config

from helpers.html import comparison_html, parse_tables
from helpers.repo import REPO, copy_workflow, planned_jobs, planned_rules, snakemake
from helpers.report_inputs import report_inputs, three_runs
from helpers.train import CLASSES, one_epoch_checkpoint, tiny_splits

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
ARGS = ("--configfile", "config/test.yaml", "config/extra.yaml")


def validate(cfg: dict) -> dict:
    return validate_config(cfg, SCHEMA, check_models=False)


# --- the options ----------------------------------------------------------------------------


def test_defaults_are_no_flips_and_no_folder() -> None:
    cfg = validate(TINY)
    assert cfg["predict"]["tta"] == [] and cfg["infer"] == {"images": None}
    assert validate({**TINY, "predict": {"tta": ["vflip", "hflip"]}})["predict"]["tta"] == [
        "vflip",
        "hflip",
    ]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"predict": {"tta": ["rot90"]}}, "config option 'predict.tta.0': 'rot90' is not one of"),
        ({"predict": {"tta": ["hflip", "hflip"]}}, "config option 'predict.tta'"),
        ({"predict": {"tta": "hflip"}}, "config option 'predict.tta'"),
        ({"infer": {"images": 3}}, "config option 'infer.images'"),
        ({"infer": {"folder": "x"}}, "config option 'infer.folder' is unknown"),
        ({"predict": {"overlays": "some"}}, "config option 'predict.overlays': 'some' is not"),
        ({"predict": {"overlays": True}}, "config option 'predict.overlays'"),
        ({"predict": {"overlays": ["all"]}}, "config option 'predict.overlays'"),
    ],
)
def test_bad_options_fail_naming_them(sections: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({**TINY, **sections})
    assert message in str(err.value)


# --- the DAG --------------------------------------------------------------------------------


def workflow(tmp_path: Path, extra: dict) -> Path:
    work = copy_workflow(tmp_path)
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump(extra))
    return work


def jobs_of(work: Path, extra: dict) -> list[tuple[str, dict[str, str]]]:
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump(extra))
    return planned_jobs(work, *ARGS)


@pytest.mark.slow
def test_tta_adds_an_evaluation_without_flips_per_model_and_split(tmp_path) -> None:
    """The predictions without flips come from the predict job (one per model), which predicts
    every split with and without them."""
    work = workflow(tmp_path, {})
    without = Counter(rule for rule, _ in jobs_of(work, {}))
    assert "evaluate_no_tta" not in without and without["predict"] == 1
    with_tta = Counter(rule for rule, _ in jobs_of(work, {"predict": {"tta": ["hflip"]}}))
    assert with_tta == without + Counter(evaluate_no_tta=2)
    # Per run: the folds and their ensemble of a run with flips, none for a run without.
    cv = {"split": {"folds": 2}, "predict": {"ensemble": "folds", "tta": ["hflip", "vflip"]}}
    jobs = jobs_of(work, {"experiments": {"cv": cv, "plain": {}}})
    predicted = sorted(w["model"] for rule, w in jobs if rule == "predict")
    assert predicted == ["cv/ensemble", "cv/fold0", "cv/fold1", "plain"]
    evaluated = {(w["model"], w["split"]) for rule, w in jobs if rule == "evaluate_no_tta"}
    assert evaluated == {
        ("cv/fold0", "val"),
        ("cv/fold0", "test"),
        ("cv/fold1", "val"),
        ("cv/fold1", "test"),
        ("cv/ensemble", "test"),
    }
    assert Counter(rule for rule, _ in jobs)["train"] == 3


@pytest.mark.slow
def test_infer_is_planned_only_with_a_folder(tmp_path) -> None:
    work = workflow(tmp_path, {})
    (work / "new").mkdir()
    (work / "new" / "a.png").write_bytes(b"not read before the job runs")
    rules = Counter(rule for rule, _ in jobs_of(work, {}))
    assert "infer" not in rules and "infer_selected" not in rules
    jobs = jobs_of(work, {"infer": {"images": "new"}})
    assert [w for rule, w in jobs if rule == "infer"] == [{"run": "ci-tiny"}]
    assert Counter(rule for rule, _ in jobs) == rules + Counter(infer=1)
    # Experiments: once, with the run the comparison selects.
    runs = {"experiments": {"a": {}, "b": {"train": {"lr": 0.01}}}}
    rules = Counter(rule for rule, _ in jobs_of(work, runs))
    jobs = jobs_of(work, {**runs, "infer": {"images": "new"}})
    assert Counter(rule for rule, _ in jobs) == rules + Counter(infer_selected=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("images", "message"),
    [
        ("missing", "config option 'infer.images': folder 'missing' not found"),
        ("empty", "config option 'infer.images': folder 'empty' holds no files"),
        ("config/test.yaml", "'config/test.yaml' is a file, not a folder of images"),
        (".", "config option 'infer.images': folder '.' holds results/"),
        ("clash", "clash/x.jpg and clash/x.png (masks/x.png)"),
    ],
)
def test_a_missing_or_empty_folder_fails_before_any_job_runs(tmp_path, images, message) -> None:
    work = workflow(tmp_path, {"infer": {"images": images}})
    (work / "empty").mkdir()
    (work / "empty" / ".hidden").write_text("left out")
    (work / "clash").mkdir()
    for name in ("x.jpg", "x.png"):  # one mask for both
        (work / "clash" / name).write_bytes(b"not read before the job runs")
    proc = snakemake(work, *ARGS, "--cores", "1")
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (work / "results").exists()


@pytest.mark.slow
def test_a_run_cannot_override_the_folder(tmp_path) -> None:
    work = workflow(tmp_path, {"experiments": {"a": {}, "b": {"infer": {"images": "x"}}}})
    proc = snakemake(work, *ARGS, "-n")
    assert proc.returncode != 0
    assert "run 'b': option 'infer.images' is not an option of a run" in (proc.stdout + proc.stderr)


# --- predicting with flips, a folder, the selected run --------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=4)


@pytest.fixture(scope="module")
def checkpoint(data, tmp_path_factory) -> Path:
    return one_epoch_checkpoint(data, tmp_path_factory.mktemp("model"))


def test_tta_masks_are_the_argmax_of_the_flip_averaged_probabilities(data, checkpoint, tmp_path):
    test = data["test"]
    predict_split(
        checkpoint, test["manifest"], test["array"], tmp_path / "tta", PredictOptions(tta=["hflip"])
    )
    model = model_from_checkpoint(load_checkpoint(checkpoint)).eval()
    batch = ArrayDataset(test["array"]).__getitems__([0, 1, 2, 3])
    x, _ = prepare_batch(batch, torch.device("cpu"), channels_last=False)
    with torch.no_grad():
        mean = (model(x).softmax(1) + model(x.flip(3)).softmax(1).flip(3)) / 2
    for i, row in pd.read_csv(test["manifest"]).iterrows():
        size = (int(row["height"]), int(row["width"]))
        expected = F.interpolate(mean[i : i + 1], size=size, mode="bilinear").argmax(1)[0]
        got = np.asarray(Image.open(tmp_path / "tta" / "masks" / f"{row['id']}.png"))
        assert np.array_equal(got, expected.numpy().astype(np.uint8)), row["id"]


def new_images(folder: Path) -> dict[str, tuple[int, int]]:
    """A few images of their own sizes (one greyscale) and an unreadable file: name -> (w, h)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"cat.png": (37, 29), "dog.jpg": (64, 48), "grey.png": (20, 41)}
    for name, (width, height) in sizes.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        (image.convert("L") if name == "grey.png" else image).save(folder / name)
    (folder / "notes.png").write_text("not an image")
    return sizes


def test_a_folder_is_predicted_at_original_size_listing_what_it_skips(checkpoint, tmp_path):
    sizes = new_images(tmp_path / "new")
    summary = predict_folder([checkpoint], tmp_path / "new", tmp_path / "out", classes=CLASSES)
    assert summary.set_index("file")["status"].to_dict() == {
        str(tmp_path / "new" / name): "skipped" if name == "notes.png" else "predicted"
        for name in ["cat.png", "dog.jpg", "grey.png", "notes.png"]
    }
    for name, size in sizes.items():
        assert Image.open(tmp_path / "out" / "masks" / f"{Path(name).stem}.png").size == size
    with pytest.raises(InferError, match="differ from the config's"):
        predict_folder([checkpoint], tmp_path / "new", tmp_path / "o", classes=["a", "b"])


def test_the_selected_run_predicts_the_folder(checkpoint, tmp_path) -> None:
    new_images(tmp_path / "new")
    scores = {}
    for name, miou in (("low", 0.4), ("high", 0.6), ("none", None)):
        scores[name] = {"val_metrics": tmp_path / f"{name}.json"}
        scores[name]["val_metrics"].write_text(json.dumps({"mean_iou": miou}))
    cv = tmp_path / "cv.json"
    cv.write_text(json.dumps({"folds": 2, "val": {"mean_iou": {"mean": 0.7, "std": 0.1}}}))
    assert validation_score(**scores["high"]) == 0.6
    assert validation_score(scores["low"]["val_metrics"], cv) == 0.7  # the folds' mean
    assert selected_run({"a": None, "b": 0.5, "c": 0.5}) == "b"  # ties: the first declared
    models = {
        name: {"checkpoints": [str(checkpoint)], "device": "cpu", "overlay_alpha": alpha}
        for name, alpha in (("low", 0.1), ("high", 0.9), ("none", 0.1))
    }
    out = tmp_path / "infer"
    assert predict_selected(tmp_path / "new", out, scores, models, classes=CLASSES) == "high"
    assert json.loads((out / "run.json").read_text()) == {
        "run": "high",
        "val_miou": 0.6,
        "checkpoints": [str(checkpoint)],
    }
    assert len(pd.read_csv(out / "summary.csv")) == 4


# --- the reports ----------------------------------------------------------------------------


def fake_infer(folder: Path, names: list[str], run: str | None = None) -> Path:
    """A folder as segpipe.inference.folder.predict_files writes it: overlays and summary.csv, the last
    name skipped."""
    (folder / "overlays").mkdir(parents=True)
    rows = []
    for name in names[:-1]:
        stem = Path(name).stem
        Image.new("RGB", (300, 200), (200, 30, 30)).save(folder / "overlays" / f"{stem}.jpg")
        rows.append({"file": f"in/{name}", "status": "predicted", "output": f"m/{stem}.png"})
    rows.append({"file": f"in/{names[-1]}", "status": "skipped", "reason": "cannot identify"})
    pd.DataFrame(rows, columns=["file", "status", "output", "reason"]).to_csv(
        folder / "summary.csv", index=False
    )
    if run:
        (folder / "run.json").write_text(json.dumps({"run": run}))
    return folder


def write_metrics(path: Path, miou: float) -> Path:
    path.write_text(json.dumps({"mean_iou": miou, "mean_dice": miou + 0.1, "pixel_accuracy": 0.9}))
    return path


def test_run_report_shows_the_scores_with_and_without_flips_and_the_new_images(tmp_path):
    inputs = report_inputs(tmp_path)
    root = tmp_path / "no_tta"
    root.mkdir()
    (root / "per_class.csv").write_text(
        "class_id,class_name,iou,dice,true_pixels,predicted_pixels\n"
        "0,pet,0.75,0.8,1200,1100\n1,background,0.6,0.7,3000,3100\n2,border,,,0,0\n"
    )
    no_tta = {
        "metrics": write_metrics(root / "test.json", 0.70111),
        "per_class": root / "per_class.csv",
        "val_metrics": [inputs["val_metrics_json"]],
        "val_metrics_no_tta": [write_metrics(root / "val.json", 0.64)],
    }
    names = [f"new{i}.png" for i in range(6)] + ["broken.jpg"]
    infer = fake_infer(tmp_path / "infer", names)
    out = tmp_path / "report" / "report.html"
    inputs["config"] = {**inputs["config"], "infer": {"images": "in"}}
    build_report(
        out, out.parent, ReportInputs(**inputs, tta=["hflip"], no_tta=no_tta, infer_dir=infer)
    )
    html = out.read_text()
    tables = parse_tables(html).tables
    assert tables["tta-metrics"][1:] == [
        ["test", "0.712", "0.701", "0.800", "0.801", "0.930", "0.900"],
        ["val", "0.650", "0.640", "0.800", "0.740", "0.930", "0.900"],
    ]
    assert tables["tta-per-class"][1:] == [
        ["pet", "0.800", "0.750"],
        ["background", "0.620", "0.600"],
        ["border", "n/a", "n/a"],
    ]
    assert "Flips: <strong>hflip</strong>" in html and "mean over 2 views" in html
    # Up to 2 x gallery_size (2) overlays, with their names; the skipped file listed.
    shown = [name for name in names if f"<code>{name}</code>" in html]
    assert shown == names[:4] + ["broken.jpg"]
    assert html.count('<img class="infer" src="data:image/jpeg;base64,') == 4
    assert tables["infer-skipped"][1:] == [["broken.jpg", "cannot identify"]]
    assert "6 of 7 file(s) of <code>in</code> predicted with hflip" in html


def test_run_report_without_flips_or_folder_has_neither_section(tmp_path) -> None:
    inputs = report_inputs(tmp_path)
    out = tmp_path / "report.html"
    build_report(out, tmp_path / "figures", ReportInputs(**inputs))
    html = out.read_text()
    assert 'id="tta' not in html and 'id="infer' not in html


def test_comparison_report_shows_the_selected_runs_predictions(tmp_path) -> None:
    runs = three_runs(tmp_path)  # "wide" is selected
    infer = fake_infer(tmp_path / "infer", ["a.png", "b.png", "c.txt"], run="wide")
    html = comparison_html(tmp_path, runs, infer={"predictions": infer, "gallery_size": 4})
    assert "New images, predicted by the selected run (wide)" in html
    assert html.count('<img class="infer"') == 2
    assert parse_tables(html).tables["infer-skipped"][1:] == [["c.txt", "cannot identify"]]
    assert 'id="infer"' not in comparison_html(tmp_path / "plain", runs)
    (infer / "run.json").write_text(json.dumps({"run": "base"}))
    with pytest.raises(ValueError, match="predictions of run 'base', but the leaderboard selects"):
        comparison_html(tmp_path, runs, infer={"predictions": infer, "gallery_size": 4})


# --- end to end: the tiny run with flips and a folder of new images -------------------------

FLIPS_AND_FOLDER = {"predict": {"tta": ["hflip"]}, "infer": {"images": "new images"}}


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]]]:
    work = workflow(tmp_path_factory.mktemp("tta_infer"), FLIPS_AND_FOLDER)
    sizes = new_images(work / "new images")
    proc = snakemake(work, *ARGS, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work, sizes


@pytest.mark.slow
def test_both_evaluations_the_new_images_and_the_report(done) -> None:
    work, sizes = done
    run = work / "results" / "runs" / "ci-tiny"
    scores = {}
    for rule_name in ("evaluate", "evaluate_no_tta"):
        for split in ("val", "test"):
            metrics = json.loads((run / rule_name / split / "metrics.json").read_text())
            scores[rule_name, split] = metrics
            assert metrics["n_images"] > 0
    for name, size in sizes.items():
        assert Image.open(run / "infer" / "masks" / f"{Path(name).stem}.png").size == size
        assert (run / "infer" / "overlays" / f"{Path(name).stem}.jpg").exists()
    summary = pd.read_csv(run / "infer" / "summary.csv").set_index("file")
    assert summary.loc["new images/notes.png", "status"] == "skipped"
    assert (summary["status"] == "predicted").sum() == 3
    html = (run / "report" / "report.html").read_text()
    rows = parse_tables(html).tables["tta-metrics"][1:]
    assert [row[0] for row in rows] == ["test", "val"]
    for row, split in zip(rows, ("test", "val"), strict=True):
        with_flips, without = scores["evaluate", split], scores["evaluate_no_tta", split]
        assert row[1:3] == [f"{with_flips['mean_iou']:.3f}", f"{without['mean_iou']:.3f}"]
    assert html.count('<img class="infer"') == 3 and "<code>notes.png</code>" in html
    for job in ("predict", "evaluate_no_tta (val)", "infer"):
        assert f"<td>{job}</td>" in html


@pytest.mark.slow
def test_what_a_change_of_the_flips_or_the_folder_reruns(done) -> None:
    work, _ = done
    assert planned_rules(work, *ARGS) == {}
    (work / "config" / "extra.yaml").write_text(
        yaml.safe_dump({**FLIPS_AND_FOLDER, "predict": {"tta": ["hflip", "vflip"]}})
    )
    # The flips change the run's predictions and every score, never the model. The scores
    # without flips are computed again too: the predict job that writes the flipped
    # predictions rewrites the unflipped ones (the same, from the same forward passes).
    assert set(planned_rules(work, *ARGS)) == {
        "predict",
        "evaluate",
        "evaluate_no_tta",
        "report",
        "infer",
        "all",
    }
    (work / "config" / "extra.yaml").write_text(yaml.safe_dump(FLIPS_AND_FOLDER))
    Image.new("RGB", (9, 7)).save(work / "new images" / "late.png")
    assert set(planned_rules(work, *ARGS)) == {"infer", "report", "all"}
    (work / "new images" / "late.png").unlink()
    assert planned_rules(work, *ARGS) == {}


def test_the_selected_runs_untracked_options_reach_the_prediction(tmp_path, monkeypatch) -> None:
    """predict.batch_size reaches infer_selected untracked (segpipe.params) and is merged with
    the selected run's own options."""
    import segpipe.inference.predict_selected

    calls = []
    monkeypatch.setattr(
        segpipe.inference.predict_selected, "predict_folder", lambda *a, **kw: calls.append(kw)
    )
    scores = {"a": {"val_metrics": tmp_path / "a.json"}, "b": {"val_metrics": tmp_path / "b.json"}}
    scores["a"]["val_metrics"].write_text(json.dumps({"mean_iou": 0.2}))
    scores["b"]["val_metrics"].write_text(json.dumps({"mean_iou": 0.8}))
    models = {name: {"checkpoints": [f"{name}.pt"], "overlay_alpha": 0.5} for name in scores}
    untracked = {"a": {"batch_size": 3}, "b": {"batch_size": 7}}
    out = tmp_path / "infer"
    out.mkdir()
    assert predict_selected("new", out, scores, models, classes=CLASSES, untracked=untracked) == "b"
    assert calls == [{"classes": CLASSES, "threads": 1, "overlay_alpha": 0.5, "batch_size": 7}]
