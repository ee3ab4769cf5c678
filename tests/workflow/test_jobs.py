"""segpipe.workflow.jobs: what a rule's job receives of a run's config, tracked and untracked,
one shape per section (the predict section's for the splits and for new images alike)."""

from __future__ import annotations

import copy

import yaml

from segpipe.params import Untracked
from segpipe.workflow import jobs
from segpipe.workflow.config import load_schema, validate_config

from helpers.repo import REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())


def config(**sections) -> dict:
    return validate_config({**copy.deepcopy(TINY), **sections}, SCHEMA, check_models=False)


def test_a_search_rung_trains_the_run_s_options_to_its_budget() -> None:
    cfg = config()
    options = jobs.training(cfg, {**cfg["train"], "epochs": 1})
    assert options.tracked["epochs"] == 1 and "num_workers" not in options.tracked
    assert dict(options.untracked) == dict(jobs.training(cfg).untracked)
    assert set(jobs.training(cfg).untracked) == {"num_workers", "log_to", "log_images_every"}


def test_infer_selected_gets_every_run_in_one_shape() -> None:
    cfg = config()
    models, untracked = jobs.selected_prediction({"a": cfg}, {"a": ["a.pt"]})
    assert models == {"a": {"checkpoints": ["a.pt"], **jobs.prediction(cfg, folder=True).tracked}}
    assert dict(untracked) == {"a": {"batch_size": 8}}
    assert dict(jobs.dataset(cfg).untracked) == {"retries": 3, "timeout": 30}


def test_untracked_options_are_kept_apart_from_the_tracked() -> None:
    cfg = config(train={**TINY["train"], "num_workers": 3})
    options = jobs.training(cfg)
    assert isinstance(options.untracked, Untracked) and options.untracked["num_workers"] == 3
    assert "num_workers" not in options.tracked and options.tracked["lr"] == TINY["train"]["lr"]
    predict = jobs.prediction(config(predict={"batch_size": 5}))
    assert "batch_size" not in predict.tracked and predict.untracked["batch_size"] == 5
