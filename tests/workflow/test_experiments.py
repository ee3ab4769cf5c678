"""Runs side by side: declaring runs (experiments, grid), their validation and the shared DAG."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from segpipe.workflow.config import ConfigError, load_schema, validate_config
from segpipe.workflow.experiments import expand_runs, model_identity
from segpipe.workflow.experiments import main as experiments_main

from helpers.repo import REPO, copy_workflow, planned_jobs, snakemake

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
GRID = {"train.encoder": ["resnet18", "mobilenet_v2"], "train.loss": ["ce", "ce+dice"]}


def validate(cfg: dict) -> dict:
    return validate_config(cfg, SCHEMA, check_models=False)


def runs_of(**sections) -> list:
    raw = {**TINY, **sections}
    return expand_runs(raw, validate(raw), validate)


def test_a_config_without_runs_is_one_run_named_by_run_name() -> None:
    (run,) = runs_of()
    assert run.name == "ci-tiny" and run.overrides == {} and run.splitting == "base"
    assert "experiments" not in run.config and "grid" not in run.config


def test_grid_is_the_cartesian_product_with_readable_stable_names() -> None:
    runs = runs_of(grid=GRID)
    assert [r.name for r in runs] == [
        "encoder-resnet18_loss-ce",
        "encoder-resnet18_loss-ce+dice",
        "encoder-mobilenet_v2_loss-ce",
        "encoder-mobilenet_v2_loss-ce+dice",
    ]
    last = runs[-1]
    assert last.overrides == {"train.encoder": "mobilenet_v2", "train.loss": "ce+dice"}
    assert last.config["train"]["encoder"] == "mobilenet_v2"
    assert last.config["train"]["loss"] == "ce+dice"
    assert last.config["train"]["lr"] == TINY["train"]["lr"]  # the rest from the base
    assert last.config["run_name"] == last.name
    assert {r.splitting for r in runs} == {"base"}


def test_grid_names_of_lists_floats_and_repeated_option_names() -> None:
    runs = runs_of(
        grid={"train.lr": [0.001], "train.seed": [1], "split.seed": [7]},
        experiments=None,
    )
    assert [r.name for r in runs] == ["lr-0.001_train.seed-1_split.seed-7"]
    runs = runs_of(grid={"train.class_weights": [[1, 2.5, 1], None]})
    assert [r.name for r in runs] == ["class_weights-1-2.5-1", "class_weights-null"]


def test_named_experiments_are_partial_overrides_then_the_grid() -> None:
    runs = runs_of(
        experiments={"baseline": {}, "mobilenet": {"train": {"encoder": "mobilenet_v2"}}},
        grid={"train.lr": [0.01]},
    )
    assert [r.name for r in runs] == ["baseline", "mobilenet", "lr-0.01"]
    assert runs[0].overrides == {} and runs[0].config["train"] == runs_of()[0].config["train"]
    assert runs[1].overrides == {"train.encoder": "mobilenet_v2"}
    # A run's augment replaces the base's whole, as on the command line.
    base = {**TINY, "train": {**TINY["train"], "augment": {"hflip": 0.5, "rotate": 10}}}
    raw = {**base, "experiments": {"flips": {"train": {"augment": {"vflip": 0.5}}}}}
    (run,) = expand_runs(raw, validate_config(raw, SCHEMA, check_models=False), validate)
    assert run.config["train"]["augment"]["rotate"] == 0  # the schema's default, not the base's
    assert run.config["train"]["augment"]["vflip"] == 0.5
    assert run.overrides == {"train.augment": {"vflip": 0.5}}


def test_split_settings_are_named_and_shared() -> None:
    runs = runs_of(
        experiments={
            "a": {},
            "b": {"train": {"lr": 0.1}},
            "c": {"split": {"seed": 7}},
            "d": {"split": {"seed": 7}, "train": {"image_size": 64}},
            "e": {"split": {"seed": TINY["split"]["seed"]}},  # the base's value: the base split
        }
    )
    assert [r.splitting for r in runs] == ["base", "base", "seed-7", "seed-7", "base"]


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"experiments": {"x": {"train": {"encodr": "resnet18"}}}},
            "run 'x': config option 'train.encodr' is unknown",
        ),
        ({"experiments": {"x": {"train": {"lr": -1}}}}, "run 'x': config option 'train.lr'"),
        (
            {"experiments": {"x": {"classes": ["a", "b"]}}},
            "run 'x': option 'classes' changes what the data is",
        ),
        (
            {"experiments": {"x": {"remap": {"unmapped": "ignore"}}}},
            "run 'x': option 'remap.unmapped' changes what the data is",
        ),
        ({"experiments": {"x": {"ignore_index": 254}}}, "run 'x': option 'ignore_index'"),
        ({"grid": {"dataset.root": ["a", "b"]}}, "option 'dataset.root' changes what the data is"),
        (
            {"experiments": {"x": {"run_name": "y"}}},
            "run 'x': option 'run_name' is not an option of a run",
        ),
        (
            {"experiments": {"x": {"pretrained": {"cache": "elsewhere"}}}},
            "run 'x': option 'pretrained.cache' is not an option of a run",
        ),
        ({"grid": {"pretrained.cache": ["a", "b"]}}, "option 'pretrained.cache' is not an option"),
        ({"grid": {}}, "config option 'grid'"),
        ({"grid": {"train.lr": []}}, "config option 'grid.train.lr'"),
        ({"experiments": {}}, "config option 'experiments'"),
        ({"experiments": {"a b": {}}}, "config option 'experiments'"),
        ({"grid": {"lr": [0.1]}}, "config option 'grid'"),
        (
            {"experiments": {"lr-0.01": {}}, "grid": {"train.lr": [0.01]}},
            "two runs are named 'lr-0.01'",
        ),
        ({"grid": {"train.batch_size": [0]}}, "run 'batch_size-0'"),
        ({"run_name": "my run"}, "config option 'run_name'"),
    ],
)
def test_bad_runs_fail_naming_the_run_and_option(sections: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        runs_of(**sections)
    assert message in str(err.value)


# --- a model's identity: runs that differ only in options that cannot change it share it ---


def test_runs_that_differ_only_in_assessment_or_speed_options_share_a_training() -> None:
    runs = runs_of(
        experiments={
            "a": {},
            "b": {"train": {"lr": 0.01}},
            "tta": {"predict": {"tta": ["hflip"]}, "report": {"title": "t"}},
            "fast": {"train": {"num_workers": 2, "log_to": ["tensorboard"]}},
            "b-eval": {"train": {"lr": 0.01}, "evaluate": {"foreground_classes": [0]}},
            "cores": {"resources": {"train": {"threads": 2, "mem_mb": 3000, "runtime": 9}}},
            "other-seed": {"split": {"seed": 7}},
        }
    )
    assert {r.name: r.shares for r in runs} == {
        "a": None,
        "b": None,
        "tta": "a",
        "fast": "a",
        "b-eval": "b",
        "cores": "a",
        "other-seed": None,
    }
    shared = {r.name: r for r in runs}["tta"]
    assert [(m.name, m.trained_as) for m in shared.models] == [("tta", "a")]


def test_the_identity_is_the_options_that_train_the_model() -> None:
    a, b, c = runs_of(
        experiments={
            "a": {},
            "b": {"predict": {"tta": ["vflip"], "batch_size": 1}, "compare": {"seed": 3}},
            "c": {"train": {"augment": {"hflip": 0.4}}},
        }
    )
    assert model_identity(a) == model_identity(b) != model_identity(c)
    assert "train.lr" in model_identity(a) and "train.augment" in model_identity(a)
    assert not {"predict.tta", "train.num_workers", "resources.train.threads"} & set(
        model_identity(a)
    )


def test_fold_runs_share_fold_by_fold_and_val_fraction_is_no_identity_with_folds() -> None:
    runs = runs_of(
        experiments={
            "cv": {"split": {"folds": 2}},
            "cv-ens": {
                "split": {"folds": 2, "val_fraction": 0.3},
                "predict": {"ensemble": "folds"},
            },
            "cv3": {"split": {"folds": 3}},
            "plain": {},
            "plain-vf": {"split": {"val_fraction": 0.3}},
        }
    )
    by_name = {r.name: r for r in runs}
    assert {n: r.shares for n, r in by_name.items()} == {
        "cv": None,
        "cv-ens": "cv",
        "cv3": None,
        "plain": None,
        "plain-vf": None,  # without folds, val_fraction cuts another validation set
    }
    models = by_name["cv-ens"].models
    assert [(m.name, m.trained_as) for m in models] == [
        ("cv-ens/fold0", "cv/fold0"),
        ("cv-ens/fold1", "cv/fold1"),
        ("cv-ens/ensemble", None),
    ]


def test_make_demo_prints_the_reports_of_its_runs(capsys) -> None:
    configs = [REPO / "config" / "config.yaml", REPO / "config" / "demo.yaml"]
    assert experiments_main(["--reports", *map(str, configs)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Run report (encoder-resnet18): results/runs/encoder-resnet18/report/report.html",
        "Run report (encoder-mobilenet_v2): results/runs/encoder-mobilenet_v2/report/report.html",
        "Comparison: results/compare/report.html",
    ]
    assert experiments_main(["--reports", str(REPO / "config" / "test.yaml")]) == 0
    assert (
        capsys.readouterr().out == "Run report (ci-tiny): results/runs/ci-tiny/report/report.html\n"
    )


def grid_workflow(tmp_path: Path, runs: dict) -> Path:
    work = copy_workflow(tmp_path)
    (work / "config" / "runs.yaml").write_text(yaml.safe_dump(runs))
    return work


@pytest.mark.slow
def test_dag_of_a_4_run_grid_computes_shared_stages_once(tmp_path: Path) -> None:
    work = grid_workflow(tmp_path, {"grid": GRID})
    jobs = planned_jobs(work, "--configfile", "config/test.yaml", "config/runs.yaml")
    counts = Counter(rule for rule, _ in jobs)
    assert counts == {
        "synthesize": 1,
        "download": 1,
        "remap": 1,
        "split": 1,
        "preprocess": 3,  # one per split
        "train": 4,
        "predict": 4,  # one per run: its val and test
        "evaluate": 8,
        "report": 4,
        "compare": 1,
    }
    assert {w["model"] for rule, w in jobs if rule == "train"} == {
        "encoder-resnet18_loss-ce",
        "encoder-resnet18_loss-ce+dice",
        "encoder-mobilenet_v2_loss-ce",
        "encoder-mobilenet_v2_loss-ce+dice",
    }


@pytest.mark.slow
def test_a_grid_over_options_that_train_nothing_trains_one_model(tmp_path: Path) -> None:
    """predict.tta x report.gallery_size is four runs of one model: one train job, each run
    predicted, scored and reported from that training, and the comparison of the four."""
    grid = {"predict.tta": [[], ["hflip"]], "report.gallery_size": [1, 2]}
    work = grid_workflow(tmp_path, {"grid": grid})
    jobs = planned_jobs(work, "--configfile", "config/test.yaml", "config/runs.yaml")
    counts = Counter(rule for rule, _ in jobs)
    assert counts["train"] == 1 and counts["predict"] == 4 and counts["report"] == 4
    assert [w["model"] for rule, w in jobs if rule == "train"] == ["tta-empty_gallery_size-1"]
    assert counts["compare"] == 1


@pytest.mark.slow
def test_fold_runs_of_one_model_train_each_fold_once(tmp_path: Path) -> None:
    runs = {
        "experiments": {
            "cv": {"split": {"folds": 2}},
            "cv-ens": {"split": {"folds": 2}, "predict": {"ensemble": "folds", "tta": ["hflip"]}},
            "fast": {"train": {"num_workers": 1}},
        }
    }
    work = grid_workflow(tmp_path, runs)
    jobs = planned_jobs(work, "--configfile", "config/test.yaml", "config/runs.yaml")
    trained = sorted(w["model"] for rule, w in jobs if rule == "train")
    assert trained == ["cv/fold0", "cv/fold1", "fast"]
    predicted = sorted(w["model"] for rule, w in jobs if rule == "predict")
    assert predicted == [
        "cv-ens/ensemble",
        "cv-ens/fold0",
        "cv-ens/fold1",
        "cv/fold0",
        "cv/fold1",
        "fast",
    ]


@pytest.mark.slow
def test_dag_splits_and_preprocesses_once_per_distinct_setting(tmp_path: Path) -> None:
    runs = {
        "experiments": {
            "a": {},
            "b": {"train": {"image_size": 64}},
            "c": {"split": {"seed": 7}},
            "d": {"split": {"seed": 7}, "train": {"loss": "ce"}},
        }
    }
    work = grid_workflow(tmp_path, runs)
    jobs = planned_jobs(work, "--configfile", "config/test.yaml", "config/runs.yaml")
    assert sorted(w["splitting"] for rule, w in jobs if rule == "split") == ["base", "seed-7"]
    preprocess = {(w["splitting"], w["size"]) for rule, w in jobs if rule == "preprocess"}
    assert preprocess == {("base", "32"), ("base", "64"), ("seed-7", "32")}
    assert Counter(rule for rule, _ in jobs)["preprocess"] == 9


@pytest.mark.slow
def test_a_bad_run_fails_before_any_job_runs(tmp_path: Path) -> None:
    work = grid_workflow(tmp_path, {"experiments": {"wide": {"train": {"loss": "hinge"}}}})
    proc = snakemake(work, "--configfile", "config/test.yaml", "config/runs.yaml", "--cores", "1")
    assert proc.returncode != 0
    assert "run 'wide': config option 'train.loss'" in proc.stderr
    assert not (work / "results").exists()


# --- end to end: three runs of the tiny config, the comparison, and what a change reruns ------

THREE_RUNS = {
    "experiments": {
        "base": {},
        "ce": {"train": {"loss": "ce"}},
        "high-lr": {"train": {"lr": 0.01}},
    }
}


def write_runs(work: Path, runs: dict) -> tuple[str, ...]:
    (work / "config" / "runs.yaml").write_text(yaml.safe_dump(runs))
    return ("--configfile", "config/test.yaml", "config/runs.yaml")


def jobs_by_run(work: Path, runs: dict) -> dict[str, set[str]]:
    """Run (or "shared") -> rules that ``snakemake -n`` plans for it."""
    planned: dict[str, set[str]] = {}
    for rule, wildcards in planned_jobs(work, *write_runs(work, runs)):
        run = wildcards.get("run", wildcards.get("model", "shared"))
        planned.setdefault(run, set()).add(rule)
    return planned


PER_RUN = {"train", "predict", "evaluate", "report"}


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> Path:
    work = copy_workflow(tmp_path_factory.mktemp("experiments"))
    proc = snakemake(work, *write_runs(work, THREE_RUNS), "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work


@pytest.mark.slow
def test_each_run_has_its_tree_and_the_comparison_ranks_them(three_runs: Path) -> None:
    runs = three_runs / "results" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["base", "ce", "high-lr"]
    val = {
        run: yaml.safe_load((runs / run / "evaluate" / "val" / "metrics.json").read_text())
        for run in THREE_RUNS["experiments"]
    }
    board = pd.read_csv(three_runs / "results" / "compare" / "leaderboard.csv")
    assert sorted(board["run"]) == ["base", "ce", "high-lr"]
    best = max(val, key=lambda run: val[run]["mean_iou"])
    assert board.loc[board["selected"], "run"].tolist() == [best]
    assert board["val_miou"].is_monotonic_decreasing
    html = (three_runs / "results" / "compare" / "report.html").read_text()
    for run in THREE_RUNS["experiments"]:
        assert f'href="../runs/{run}/report/report.html"' in html
    assert "train.loss" in html and "train.lr" in html  # what differs
    history = pd.read_csv(runs / "ce" / "train" / "history.csv")
    assert len(history) == 2
    assert yaml.safe_load((runs / "ce" / "train" / "model.json").read_text())["parameters"] > 0


@pytest.mark.slow
def test_reruns_stay_minimal(three_runs: Path) -> None:
    assert jobs_by_run(three_runs, THREE_RUNS) == {}
    # One run's override changed: that run only, and the comparison.
    changed = {"experiments": {**THREE_RUNS["experiments"], "high-lr": {"train": {"lr": 0.02}}}}
    assert jobs_by_run(three_runs, changed) == {"high-lr": PER_RUN, "shared": {"compare"}}
    # A run added: its jobs and the comparison.
    added = {"experiments": {**THREE_RUNS["experiments"], "focal": {"train": {"loss": "focal"}}}}
    assert jobs_by_run(three_runs, added) == {"focal": PER_RUN, "shared": {"compare"}}
    # A base train option changed: every run that does not override it.
    base_lr = {**THREE_RUNS, "train": {"lr": 0.005}}
    assert jobs_by_run(three_runs, base_lr) == {
        "base": PER_RUN,
        "ce": PER_RUN,
        "shared": {"compare"},
    }
    # A base split option: the split, preprocess and every run.
    seed = {**THREE_RUNS, "split": {"seed": 3}}
    assert jobs_by_run(three_runs, seed)["shared"] == {"split", "preprocess", "compare"}


@pytest.mark.slow
def test_removing_a_run_reruns_only_the_comparison(three_runs: Path) -> None:
    kept = {"experiments": {k: v for k, v in THREE_RUNS["experiments"].items() if k != "ce"}}
    assert jobs_by_run(three_runs, kept) == {"shared": {"compare"}}
    runs = three_runs / "results" / "runs"
    before = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    proc = snakemake(three_runs, *write_runs(three_runs, kept), "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    after = {p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file()}
    assert after == before  # the other runs' files, and the removed run's, left alone
    board = (three_runs / "results" / "compare" / "leaderboard.csv").read_text()
    assert "high-lr" in board and "\nce," not in board and ",ce," not in board
