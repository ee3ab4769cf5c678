"""What a changed option reruns, without running a job: the workflow's outputs are made empty
and recorded by ``snakemake --touch --forceall`` (with each job's params, as a real run records
them), then ``snakemake -n`` lists what a change would rerun.

Options that change how fast a job runs or how it is watched (segpipe.params.UNTRACKED_OPTIONS),
options a job does not use, and the comparison's options rerun nothing of a run. The dry runs
take seconds each (marked slow); the checks of the resume state and the split are fast.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.repo import TRAIN_DEFAULTS, copy_workflow, planned_rules, snakemake

TINY = ("--configfile", "config/test.yaml", "config/runs.yaml")


def touched_workflow(work: Path, *args: str, runs: str = "") -> Path:
    """A copy of the workflow whose outputs exist (empty) and are recorded as up to date, with
    a folder of images to infer (infer.images: new_images) and ``runs`` in config/runs.yaml."""
    copy_workflow(work)
    (work / "new_images").mkdir()
    (work / "new_images" / "a.png").write_bytes(b"not read by a dry run")
    (work / "config" / "runs.yaml").write_text(f"infer: {{images: new_images}}\n{runs}")
    plan = snakemake(work, "-n", *args)
    assert plan.returncode == 0, plan.stderr[-3000:]
    for line in re.findall(r"^    output: (.*)$", plan.stdout, re.M):
        for name in line.split(", "):
            path = work / name
            if "." in path.name:  # a file; the directory outputs have no suffix
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
    done = snakemake(work, "--touch", "--forceall", "--cores", "1", *args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert planned_rules(work, *args) == {}
    return work


@pytest.fixture(scope="module")
def one_run(tmp_path_factory) -> Path:
    return touched_workflow(tmp_path_factory.mktemp("reruns"), *TINY)


FOLDS = (*TINY, "--config", "split={folds: 2, val_fraction: 0.2}")


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory) -> Path:
    return touched_workflow(tmp_path_factory.mktemp("reruns_folds"), *FOLDS)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    runs = "experiments: {a: {}, b: {train: {lr: 0.01}}}\n"
    return touched_workflow(tmp_path_factory.mktemp("reruns_runs"), *TINY, runs=runs)


SPEED_AND_MONITOR = (
    "train={num_workers: 3, log_to: [tensorboard], log_images_every: 2}",
    "predict={batch_size: 3}",
    "dataset={retries: 7, timeout: 5}",
    "compare={title: another title, gallery_size: 5}",
)


@pytest.mark.slow
def test_speed_monitor_and_comparison_options_rerun_nothing(one_run: Path) -> None:
    assert planned_rules(one_run, *TINY, "--config", *SPEED_AND_MONITOR) == {}


@pytest.mark.slow
def test_with_experiments_speed_options_rerun_nothing(two_runs: Path) -> None:
    assert planned_rules(two_runs, *TINY, "--config", *SPEED_AND_MONITOR[:-1]) == {}
    # The comparison's options rerun the comparison, not the runs' reports.
    assert planned_rules(two_runs, *TINY, "--config", "compare={title: t}") == {
        "compare": 1,
        "all": 1,
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "reruns"),
    [
        ("train={lr: 0.02}", {"train", "predict", "evaluate", "infer", "report"}),
        # Only the new images get overlays by default (predict.overlays: gallery).
        ("predict={overlay_alpha: 0.3}", {"infer", "report"}),
        ("predict={overlays: all}", {"predict", "evaluate", "report"}),
        ("predict={overlays: none}", {"infer", "report"}),
        ("predict={overlays: none, overlay_alpha: 0.3}", {"infer", "report"}),
        ("report={title: another}", {"report"}),
    ],
)
def test_options_that_change_results_rerun_what_they_change(one_run, change, reruns) -> None:
    assert set(planned_rules(one_run, *TINY, "--config", change)) - {"all"} == reruns


@pytest.mark.slow
def test_val_fraction_with_folds_retrains_nothing(fold_run: Path) -> None:
    changed = (*TINY, "--config", "split={folds: 2, val_fraction: 0.3}")
    assert planned_rules(fold_run, *changed) == {}
    seed = (*TINY, "--config", "split={folds: 2, val_fraction: 0.2, seed: 5}")
    assert {"split", "folds", "train"} <= set(planned_rules(fold_run, *seed))


def test_speed_and_monitor_options_keep_the_resume_state() -> None:
    """A rerun for another reason resumes training rather than starting it again."""
    from segpipe.params import UNTRACKED_OPTIONS
    from segpipe.training.train_job import Job, TrainConfig

    def recorded(**options) -> dict:
        job = Job(
            cfg=TrainConfig(**{**TRAIN_DEFAULTS, **options}),
            train_data=None,
            val_data=None,
            classes=["a", "b"],
            ignore_index=255,
            threads=1,
            resume_dir=Path("resume"),
            best_path="",
            last_path="",
            history_path="",
            data_digest="",
        )
        return job.config

    changed = {"num_workers": 4, "log_to": ["tensorboard"], "log_images_every": 1}
    assert set(changed) == set(UNTRACKED_OPTIONS["train"])
    assert recorded(num_workers=0) == recorded(**changed)
    assert recorded(lr=0.1) != recorded(lr=0.2)


def test_the_split_ignores_val_fraction_only_with_folds() -> None:
    from segpipe.workflow.experiments import run_split_settings

    def settings(*splits):
        return run_split_settings([{"split": split} for split in splits])

    split = {"seed": 1, "val_fraction": 0.3, "test_fraction": 0.2, "folds": None}
    assert settings(split) == [{k: v for k, v in split.items() if k != "folds"}]
    # A run with folds: its val_fraction changes nothing.
    folds = [{**split, "folds": 3, "val_fraction": v} for v in (0.1, 0.3)]
    assert settings(folds[0]) == settings(folds[1])
    # Beside a run without folds and the same other options: its split, shared.
    assert settings(folds[0], split)[0] == settings(split)[0]
    assert settings(folds[0], {**split, "seed": 2})[0] == settings(folds[1])[0]
