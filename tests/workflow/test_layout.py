"""segpipe.workflow.layout: which files of results/ and benchmarks/ a run or a model reads, and
the config helpers rules/common.smk calls (override merging, infer.images checks)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from segpipe.data.download import OXFORD_PETS_RESOURCES
from segpipe.workflow import jobs
from segpipe.workflow.config import (
    download_resources,
    infer_images_problems,
    load_schema,
    replace_whole_options,
    validate_config,
)
from segpipe.workflow.experiments import expand_runs
from segpipe.workflow.layout import Layout
from segpipe.workflow.paths import run_dir

from helpers.repo import REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())


def validate(cfg: dict) -> dict:
    return validate_config(cfg, SCHEMA, check_models=False)


def layout_of(source: str = "synthetic", infer: bool = False, **sections) -> Layout:
    raw = {**copy.deepcopy(TINY), **sections}
    runs = {run.name: run for run in expand_runs(raw, validate(raw), validate)}
    compare = "experiments" in sections or "grid" in sections
    return Layout(runs, source, infer=infer, compare=compare)


def test_a_single_run_reads_its_own_split_and_arrays() -> None:
    layout = layout_of(run_name="a.b+c-1", train={"image_size": 96})
    assert list(layout.models) == ["a.b+c-1"]
    assert run_dir("a.b+c-1") == "results/runs/a.b+c-1"
    assert layout.model_manifest("a.b+c-1", "train") == "results/split/base/train.csv"
    assert layout.split_manifest("a.b+c-1", "classes") == "results/split/base/classes.csv"
    assert layout.preprocessed("a.b+c-1", "val") == "results/preprocess/base/96/val.npy"
    assert layout.model_arrays("a.b+c-1", "train") == {
        "arrays": ["results/preprocess/base/96/train.npy", "results/preprocess/base/96/val.npy"],
        "array_manifests": ["results/split/base/train.csv", "results/split/base/val.csv"],
    }
    assert layout.model_arrays("a.b+c-1", "test")["arrays"] == [
        "results/preprocess/base/96/test.npy"
    ]
    assert layout.checkpoints("a.b+c-1") == ["results/runs/a.b+c-1/train/best.pt"]
    assert layout.infer_dir() == "results/runs/a.b+c-1/infer"


def test_keep_aspect_arrays_are_named_by_their_scale() -> None:
    layout = layout_of(run_name="s", train={"resize": "keep_aspect", "image_scale": 0.5})
    assert layout.preprocess_size("s") == "x0.5"
    assert layout.preprocessed("s", "test") == "results/preprocess/base/x0.5/test.npy"
    assert layout_of(run_name="s", train={"resize": "keep_aspect"}).preprocess_size("s") == "x1"


def test_fold_models_read_their_fold_and_the_ensemble_its_members() -> None:
    layout = layout_of(run_name="cv", split={"folds": 3}, predict={"ensemble": "folds"})
    assert list(layout.models) == ["cv/fold0", "cv/fold1", "cv/fold2", "cv/ensemble"]
    assert layout.fold_manifest("cv", 2, "val") == "results/folds/base/k3/fold2/val.csv"
    assert layout.model_manifest("cv/fold1", "val") == "results/folds/base/k3/fold1/val.csv"
    assert layout.model_manifest("cv/fold1", "test") == "results/split/base/test.csv"
    assert layout.model_manifest("cv/ensemble", "test") == "results/split/base/test.csv"
    # A fold's parts are rows of the split's train and val arrays.
    assert layout.model_arrays("cv/fold0", "val")["arrays"] == [
        "results/preprocess/base/32/train.npy",
        "results/preprocess/base/32/val.npy",
    ]
    assert layout.checkpoints("cv/ensemble") == [
        f"results/runs/cv/fold{i}/train/best.pt" for i in range(3)
    ]
    assert layout.model_run("cv/ensemble").name == "cv"


def test_evaluations_cover_each_model_split_and_the_runs_without_flips() -> None:
    layout = layout_of(
        experiments={
            "cv": {"split": {"folds": 2}, "predict": {"ensemble": "folds", "tta": ["hflip"]}},
            "plain": {},
        }
    )
    files = layout.evaluations()
    assert "results/runs/cv/fold0/evaluate/val/metrics.json" in files
    assert "results/runs/cv/fold1/evaluate_no_tta/test/metrics.json" in files
    assert "results/runs/cv/ensemble/evaluate_no_tta/test/metrics.json" in files
    # An ensemble has no validation split; a run without tta is evaluated once per split.
    assert "results/runs/cv/ensemble/evaluate/val/metrics.json" not in files
    assert [f for f in files if f.startswith("results/runs/plain/")] == [
        "results/runs/plain/evaluate/val/metrics.json",
        "results/runs/plain/evaluate/test/metrics.json",
    ]
    assert len(files) == len(set(files)) == 2 * 4 + 2 + 2


def test_predict_inputs_hold_every_split_a_model_is_scored_on() -> None:
    layout = layout_of(
        experiments={"cv": {"split": {"folds": 2}, "predict": {"ensemble": "folds"}}}
    )
    fold, s = layout.predict_inputs("cv/fold1"), layout.runs["cv"].splitting
    assert fold["checkpoints"] == ["results/runs/cv/fold1/train/best.pt"]
    assert fold["manifests"] == [
        f"results/folds/{s}/k2/fold1/val.csv",
        f"results/split/{s}/test.csv",
    ]
    parts = ("train", "val", "test")
    assert fold["arrays"] == [f"results/preprocess/{s}/32/{part}.npy" for part in parts]
    assert fold["array_manifests"] == [f"results/split/{s}/{part}.csv" for part in parts]
    ensemble = layout.predict_inputs("cv/ensemble")  # no validation split: the test array only
    assert ensemble["manifests"] == [f"results/split/{s}/test.csv"]
    assert ensemble["arrays"] == [f"results/preprocess/{s}/32/test.npy"]
    assert len(ensemble["checkpoints"]) == 2
    assert layout.predictions("cv/ensemble", "test") == "results/runs/cv/ensemble/predict/test"


def test_only_models_with_pretrained_weights_read_the_cache() -> None:
    weights = {"encoder": "mobilenet_v2", "encoder_weights": "imagenet"}
    layout = layout_of(
        experiments={
            "scratch": {},
            "pre": {"train": weights},
            "cv": {"train": weights, "split": {"folds": 2}},
        }
    )
    assert layout.weights_record("scratch") == {} and layout.weights_cache("scratch") is None
    record = "resources/pretrained/records/mobilenet_v2/imagenet.json"
    for model in ("pre", "cv/fold0", "cv/fold1"):
        assert layout.weights_record(model) == {"weights_record": record}
        assert layout.weights_cache(model) == "resources/pretrained"
    shared = Layout(layout.runs, pretrained_cache="/shared/weights")
    assert shared.weights_record("pre") == {
        "weights_record": "/shared/weights/records/mobilenet_v2/imagenet.json"
    }


def test_grid_runs_with_other_split_options_get_their_own_split_folder() -> None:
    layout = layout_of(grid={"split.seed": [1, 2], "train.lr": [0.001]})
    names = list(layout.runs)
    assert names == ["seed-1_lr-0.001", "seed-2_lr-0.001"]
    manifests = {layout.model_manifest(name, "train") for name in names}
    assert len(manifests) == 2 and all(m.startswith("results/split/seed-") for m in manifests)
    assert layout.infer_dir() == "results/compare/infer"


def test_run_benchmarks_name_every_job_of_a_run_in_order() -> None:
    layout = layout_of(
        run_name="cv.1",
        split={"folds": 2},
        predict={"ensemble": "folds", "tta": ["vflip"]},
        infer=True,
    )
    jobs = layout.run_benchmarks("cv.1")
    assert list(jobs)[:5] == [
        "synthesize",
        "download",
        "remap",
        "split",
        "folds (fold 0)",
    ]
    assert jobs["folds (fold 1)"] == "benchmarks/folds/base/k2/fold1.tsv"
    assert jobs["preprocess (test)"] == "benchmarks/preprocess/base/32/test.tsv"
    assert jobs["fold0: train"] == "benchmarks/train/cv.1/fold0.tsv"
    assert "ensemble: train" not in jobs
    fold0 = [job for job in jobs if job.startswith("fold0: ")]
    assert fold0 == [
        "fold0: train",
        "fold0: predict",
        "fold0: evaluate (val)",
        "fold0: evaluate (test)",
        "fold0: evaluate_no_tta (val)",
        "fold0: evaluate_no_tta (test)",
    ]
    assert jobs["fold0: predict"] == "benchmarks/predict/cv.1/fold0.tsv"
    assert jobs["ensemble: predict"] == "benchmarks/predict/cv.1/ensemble.tsv"
    assert jobs["ensemble: evaluate_no_tta (test)"] == (
        "benchmarks/evaluate_no_tta/cv.1/ensemble/test.tsv"
    )
    assert jobs["crossval"] == "benchmarks/crossval/cv.1.tsv"
    assert jobs["infer"] == "benchmarks/infer/cv.1.tsv"


@pytest.mark.parametrize(
    ("source", "first"), [("synthetic", "synthesize"), ("oxford_pets", "download")]
)
def test_run_benchmarks_of_a_download_and_a_folder(source: str, first: str) -> None:
    jobs = layout_of(source, run_name="r").run_benchmarks("r")
    assert next(iter(jobs)) == first and "crossval" not in jobs and "infer" not in jobs
    assert list(jobs)[-4:] == [
        "train",
        "predict",
        "evaluate (val)",
        "evaluate (test)",
    ]
    folder = layout_of("folder", run_name="r").run_benchmarks("r")
    assert next(iter(folder)) == "remap" and "download" not in folder


def test_a_search_winners_training_is_benchmarked_by_its_rungs() -> None:
    """The winner of a search trains in rule search_train, rung by rung, and is published by
    search_winner: its report reads those jobs' benchmarks, not the train rule's it never had."""
    layout = dataclasses.replace(layout_of(experiments={"a": {}, "b": {}}), search_rungs=3)
    jobs = layout.run_benchmarks("b")
    assert not [path for path in jobs.values() if path.startswith("benchmarks/train/")]
    training = {job: path for job, path in jobs.items() if "search" in job}
    assert training == {
        "search_train (rung 0)": "benchmarks/search_train/b/rung0.tsv",
        "search_train (rung 1)": "benchmarks/search_train/b/rung1.tsv",
        "search_train (rung 2)": "benchmarks/search_train/b/rung2.tsv",
        "search_winner": "benchmarks/search_winner/b.tsv",
    }
    assert list(jobs)[-4:] == ["search_winner", "predict", "evaluate (val)", "evaluate (test)"]


def test_with_experiments_the_comparison_infers_not_each_run() -> None:
    layout = layout_of(infer=True, experiments={"a": {}, "b": {}})
    assert not layout.run_infers()
    assert "infer" not in layout.run_benchmarks("a")


def test_command_line_tables_replace_config_yamls_whole() -> None:
    base = {
        "remap": {"table": {"1": 0, "2": 1}, "colors": []},
        "train": {"augment": {"hflip": 0.5, "rotate": 10}, "lr": 0.1},
        "dataset": {"split_lists": {"train": "a.txt"}, "source": "folder"},
    }
    override = {"remap": {"colors": [{"color": [0, 0, 0], "class": 0}]}, "train": {"augment": {}}}
    merged = replace_whole_options(copy.deepcopy(base), override)
    assert merged["remap"] == {"colors": [{"color": [0, 0, 0], "class": 0}]}
    assert merged["train"] == {"augment": {}, "lr": 0.1}
    assert merged["dataset"] == base["dataset"]
    table = replace_whole_options(copy.deepcopy(base), {"remap": {"table": {"3": 1}}})
    assert table["remap"] == {"table": {"3": 1}}
    lists = replace_whole_options(copy.deepcopy(base), {"dataset": {"split_lists": {"val": "v"}}})
    assert lists["dataset"]["split_lists"] == {"val": "v"}
    # No command-line config, or one without these options: nothing changes.
    assert replace_whole_options(copy.deepcopy(base), None) == base
    assert replace_whole_options(copy.deepcopy(base), {"train": {"lr": 1}}) == base
    # remap.table given as null on the command line drops both tables.
    assert replace_whole_options({}, {"remap": {"table": None}}) == {"remap": {}}


def test_infer_images_problems_name_the_option_and_the_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "file.png").write_bytes(b"x")
    cfg = {"infer": {"images": "images"}}
    assert infer_images_problems(cfg, {"r": cfg}) == []
    assert infer_images_problems({"infer": {"images": None}}, {}) == []
    for folder, why in [
        ("missing", "folder 'missing' not found"),
        ("file.png", "'file.png' is a file, not a folder of images"),
        (".", "folder '.' holds results/"),
    ]:
        cfg = {"infer": {"images": folder}}
        (problem,) = infer_images_problems(cfg, {})
        assert problem.startswith(f"config option 'infer.images': {why}")
    (problem,) = infer_images_problems(cfg, {"x{1}": {"infer": {"images": None}}})
    assert problem.startswith("run 'x{1}': option 'infer.images' is not an option of a run")


def test_report_inputs_of_a_cross_validated_run_with_flips() -> None:
    layout = layout_of(
        run_name="cv",
        split={"folds": 2},
        predict={"ensemble": "folds", "tta": ["hflip"]},
        infer=True,
    )
    files = layout.report_inputs("cv")
    assert files["metrics"] == "results/runs/cv/ensemble/evaluate/test/metrics.json"
    assert files["val_metrics"] == "results/runs/cv/fold0/evaluate/val/metrics.json"
    assert files["predictions"] == "results/runs/cv/ensemble/predict"
    assert files["history"] == [f"results/runs/cv/fold{i}/train/history.csv" for i in range(2)]
    assert files["fold_classes"] == [f"results/folds/base/k2/fold{i}/classes.csv" for i in range(2)]
    assert files["crossval_per_image"] == "results/runs/cv/crossval/per_image.csv"
    assert files["no_tta_metrics"] == "results/runs/cv/ensemble/evaluate_no_tta/test/metrics.json"
    assert files["no_tta_val_metrics"] == [
        f"results/runs/cv/fold{i}/evaluate_no_tta/val/metrics.json" for i in range(2)
    ]
    assert files["infer"] == "results/runs/cv/infer"
    assert layout.crossval_inputs("cv") == {
        "val_metrics": [f"results/runs/cv/fold{i}/evaluate/val/metrics.json" for i in range(2)],
        "test_metrics": [f"results/runs/cv/fold{i}/evaluate/test/metrics.json" for i in range(2)],
        "val_per_image": [f"results/runs/cv/fold{i}/evaluate/val/per_image.csv" for i in range(2)],
        "ensemble_test_metrics": "results/runs/cv/ensemble/evaluate/test/metrics.json",
    }


def test_report_inputs_of_a_plain_run_have_no_folds_flips_or_infer() -> None:
    layout = layout_of(run_name="r")
    files = layout.report_inputs("r")
    assert files["metrics"] == "results/runs/r/evaluate/test/metrics.json"
    assert files["fold_classes"] == [] and files["history"] == ["results/runs/r/train/history.csv"]
    assert not [key for key in files if "tta" in key or "crossval" in key or key == "infer"]
    assert layout.crossval_outputs("r") == {}


def test_compare_and_selection_read_each_runs_validation_scores() -> None:
    layout = layout_of(
        infer=True, experiments={"cv": {"split": {"folds": 2}}, "a+b.c": {"train": {"lr": 0.1}}}
    )
    entry = layout.compare_run("a+b.c")
    assert entry["overrides"] == {"train.lr": 0.1}
    assert entry["report_html"] == "../runs/a+b.c/report/report.html"
    assert entry["model_json"] == "results/runs/a+b.c/train/model.json"
    cv = layout.compare_run("cv")
    assert cv["test_metrics"] == "results/runs/cv/fold0/evaluate/test/metrics.json"
    assert cv["crossval_metrics"] == "results/runs/cv/crossval/metrics.json"
    inputs = layout.compare_inputs()
    assert inputs[-1] == "results/compare/infer"
    assert "results/runs/cv/report/report.html" in inputs and len(inputs) == len(set(inputs))
    assert layout.selection_runs() == {
        "cv": {
            "val_metrics": "results/runs/cv/fold0/evaluate/val/metrics.json",
            "crossval_metrics": "results/runs/cv/crossval/metrics.json",
        },
        "a+b.c": {
            "val_metrics": "results/runs/a+b.c/evaluate/val/metrics.json",
            "crossval_metrics": None,
        },
    }
    assert layout.selection_inputs() == sorted(
        [
            "results/runs/cv/fold0/evaluate/val/metrics.json",
            "results/runs/cv/crossval/metrics.json",
            "results/runs/a+b.c/evaluate/val/metrics.json",
        ]
    )


def test_prediction_options_leave_out_defaults_and_the_flips_without_tta() -> None:
    cfg = validate(
        {
            **copy.deepcopy(TINY),
            "predict": {"overlay_alpha": 0.4, "overlays": "all", "tta": ["hflip"]},
        }
    )
    device = {"device": cfg["train"]["device"], "amp": cfg["train"]["amp"]}
    drawn = {"with_overlays": True, "overlay_alpha": 0.4, **device}
    assert jobs.prediction(cfg).tracked == {**drawn, "tta": ["hflip"]}
    assert jobs.prediction(cfg).untracked == {"batch_size": cfg["predict"]["batch_size"]}
    no_flips = {**cfg, "predict": {**cfg["predict"], "tta": []}}
    assert jobs.prediction(no_flips).tracked == drawn
    sliding = {**no_flips, "predict": {**no_flips["predict"], "mode": "sliding", "overlap": 0.25}}
    assert jobs.prediction(sliding).tracked == {**drawn, "mode": "sliding", "overlap": 0.25}
    # New images are predicted whole, at the training size.
    assert jobs.prediction(sliding, folder=True).tracked == drawn


@pytest.mark.parametrize(
    ("choice", "splits", "folder"),
    [("gallery", False, True), ("all", True, True), ("none", False, False)],
)
def test_overlays_of_the_splits_and_new_images_and_their_alpha_only_with_them(
    choice, splits, folder
) -> None:
    cfg = validate({**copy.deepcopy(TINY), "predict": {"overlays": choice, "overlay_alpha": 0.3}})
    for new_images, drawn in ((False, splits), (True, folder)):
        options = jobs.prediction(cfg, folder=new_images).tracked
        assert options["with_overlays"] is drawn
        assert options.get("overlay_alpha") == (0.3 if drawn else None)


def test_infer_options_and_download_resources() -> None:
    cfg = validate({**copy.deepcopy(TINY), "predict": {"batch_size": 3, "tta": ["vflip"]}})
    options = jobs.prediction(cfg, folder=True)
    assert options.tracked == {
        "with_overlays": True,
        "overlay_alpha": cfg["predict"]["overlay_alpha"],
        "tta": ["vflip"],
        "device": cfg["train"]["device"],
        "amp": cfg["train"]["amp"],
    }
    assert dict(options.untracked) == {"batch_size": 3}
    assert download_resources({"source": "synthetic"}) == []
    assert download_resources({"source": "folder", "urls": ["x"]}) == []
    assert download_resources({"source": "oxford_pets", "urls": ["x"]}) == ["x"]
    assert download_resources({"source": "oxford_pets"}) == OXFORD_PETS_RESOURCES
