"""The ISBI 2012 membrane examples at tiny scale (tests/helpers/example_runs.py): membrane_mini_unet,
membrane_mobilenet_unet and membrane_unet_augment, the comparison of the first two, and the
5-fold example's folds and plan. The stack is read in place and must not change.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from segpipe.workflow.config import load_schema, validate_config
from segpipe.workflow.experiments import expand_runs

from helpers.example_runs import (
    check_comparison,
    check_outputs,
    load_example,
    run_example,
    tiny,
)
from helpers.remap import tree_digest
from helpers.repo import REPO, copy_workflow, planned_jobs, planned_rules, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


@pytest.fixture(scope="module")
def isbi_work(tmp_path_factory) -> Path:
    """One workflow copy for the ISBI examples: remap, split and preprocess (same data, same
    32 px size) run once and are shared; train, predict, evaluate and report rerun per example."""
    return copy_workflow(tmp_path_factory.mktemp("isbi"))


def test_example_4_isbi_membrane_unet_augment(shared_data, isbi_work):
    isbi = shared_data / "isbi2012_membrane" / "train"
    before = tree_digest(isbi)
    cfg = tiny(load_example("membrane_unet_augment"), root=str(isbi))
    results = run_example(isbi_work, "membrane_unet_augment", cfg)
    check_outputs(results, cfg)
    index = pd.read_csv(results / "remap" / "index.csv")
    assert len(index) == 30 and set(index["width"]) == {512}
    assert tree_digest(isbi) == before


def test_examples_3_3b_and_comparison_a_membrane_unets(shared_data, isbi_work):
    """The comparison's two runs are examples 3 and 3b (membrane_mini_unet and
    membrane_mobilenet_unet; pretrained weights are off at CI scale, so they are the same
    models): one run of the comparison checks all three."""
    isbi = shared_data / "isbi2012_membrane" / "train"
    before = tree_digest(isbi)
    schema = load_schema(REPO / "config" / "schema.yaml")
    cfg = tiny(load_example("compare_membrane_unets"), root=str(isbi))
    runs = {
        r.name: r.config
        for r in expand_runs(
            cfg, validate_config(cfg, schema), lambda c: validate_config(c, schema)
        )
    }
    examples = {"mini-unet": "membrane_mini_unet", "mobilenet-unet": "membrane_mobilenet_unet"}
    for run, example in examples.items():
        shipped = validate_config(tiny(load_example(example), root=str(isbi)), schema)
        different = {"run_name", "report", "experiments", "grid"}
        keys = (set(runs[run]) | set(shipped)) - different
        assert {k: runs[run].get(k) for k in keys} == {k: shipped.get(k) for k in keys}, example

    results = run_example(isbi_work, "compare_membrane_unets", cfg)
    check_comparison(results, cfg)
    for run in examples:
        override = cfg["experiments"][run] or {}
        train = {**cfg["train"], **override.get("train", {})}
        check_outputs(results, {**cfg, "run_name": run, "train": train})
    index = pd.read_csv(results / "remap" / "index.csv")
    assert len(index) == 30 and set(index["width"]) == {512}
    assert tree_digest(isbi) == before


@pytest.mark.slow
@pytest.mark.shared_data
def test_example_3d_membrane_5_folds_and_their_ensemble(shared_data, isbi_work):
    """The shipped 5-fold example cuts its folds for real and plans one model per fold and their
    ensemble; training, the ensemble, rule crossval and the report's cross-validation section
    run end to end in tests/e2e/test_folds.py on the same code path."""
    isbi = shared_data / "isbi2012_membrane" / "train"
    shipped = load_example("membrane_5fold")
    mini = load_example("membrane_mini_unet")
    assert shipped["train"] == mini["train"] and shipped["split"]["folds"] == 5
    assert shipped["predict"]["ensemble"] == "folds"
    cfg = tiny(shipped, root=str(isbi))
    path = isbi_work / "config" / "examples" / "membrane_5fold.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    args = ("--configfile", str(path.relative_to(isbi_work)))
    proc = snakemake(isbi_work, *args, "--cores", "2", "--until", "folds")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    folds = isbi_work / "results" / "folds" / "base" / "k5"
    val = [pd.read_csv(folds / f"fold{i}" / "val.csv") for i in range(5)]
    assert sorted(len(v) for v in val) == [4, 5, 5, 5, 5]  # the 24 images after the test split
    pool = pd.concat(val)["id"]
    assert pool.is_unique and len(pool) == 24  # every image is in exactly one fold's val part

    planned = planned_rules(isbi_work, *args)
    assert planned["train"] == 5 and planned["crossval"] == 1 and planned["report"] == 1
    jobs = planned_jobs(isbi_work, *args)
    models = {w.get("model") for rule, w in jobs if rule == "predict"}
    run = cfg["run_name"]
    assert models == {f"{run}/fold{i}" for i in range(5)} | {f"{run}/ensemble"}, models
