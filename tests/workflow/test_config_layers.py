"""Configs layered as Snakemake layers them (config/config.yaml, then each --configfile), and the
options that describe a dataset: a config that reads another dataset gives them, or it is
refused before any job, by snakemake and by segpipe verify alike."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from snakemake.utils import update_config

from segpipe.workflow.config import (
    base_config,
    borrowed_options,
    changes_dataset,
    layered_config,
    merge_config,
)

from helpers.repo import BIN, REPO, copy_workflow, snakemake

BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
leaves = st.one_of(
    st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)
)
nested = st.recursive(
    leaves, lambda inner: st.dictionaries(st.sampled_from("abcd"), inner, max_size=3), max_leaves=12
)
configs = st.dictionaries(st.sampled_from("abcd"), nested, max_size=4)


@settings(max_examples=200, deadline=None)
@given(base=configs, override=configs)
def test_merging_is_snakemakes_update_config(base, override):
    expected = copy.deepcopy(base)
    update_config(expected, copy.deepcopy(override))
    assert merge_config(copy.deepcopy(base), override) == expected


def test_files_are_layered_in_order_over_the_base_and_tables_replace_whole(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train: {lr: 0.5, epochs: 3}\nremap: {table: {0: 0, 255: 1}}\n")
    second.write_text("train: {lr: 0.1}\n")
    merged, override = layered_config([first, second], REPO / "config" / "config.yaml")
    assert merged["train"]["lr"] == 0.1 and merged["train"]["epochs"] == 3
    assert merged["train"]["encoder"] == BASE["train"]["encoder"]
    assert merged["remap"]["table"] == {0: 0, 255: 1}  # not the trimap's 1, 2, 3 added to it
    assert override == {"train": {"lr": 0.1, "epochs": 3}, "remap": {"table": {0: 0, 255: 1}}}
    assert layered_config([first], tmp_path / "none.yaml")[0]["train"] == {"lr": 0.5, "epochs": 3}


def test_a_config_that_reads_another_dataset_must_say_what_describes_it():
    partial = {"dataset": {"source": "folder", "root": "data/cells"}, "remap": {"table": {0: 0}}}
    problem = borrowed_options(BASE, partial)
    assert problem is not None and "\n" not in problem
    assert "(dataset.source: folder, dataset.root: data/cells)" in problem
    for option in ("run_name", "dataset.name", "classes", "evaluate.foreground_classes"):
        assert option in problem
    assert "report.title, train.image_size, train.epochs, train.batch_size" in problem
    assert "resources.train.mem_mb" in problem and "Oxford-IIIT Pet" in problem
    assert "remap.table" not in problem  # given


def test_named_runs_need_no_run_name_and_a_colour_table_stands_for_the_table():
    cfg = {
        "dataset": {"source": "folder", "root": "d", "name": "d"},
        "experiments": {"a": {}},
        "classes": ["a", "b"],
        "remap": {"colors": [{"color": [1, 2, 3], "class": 1}]},
        "evaluate": {"foreground_classes": None},
        "report": {"title": "t"},
        "train": {"image_size": 64, "epochs": 2, "batch_size": 2},
        "resources": {"train": {"mem_mb": 1000}},
    }
    assert borrowed_options(BASE, cfg) is None
    del cfg["experiments"]
    assert "run_name;" in borrowed_options(BASE, cfg) or "run_name" in borrowed_options(BASE, cfg)


@pytest.mark.parametrize(
    "override",
    [
        {"dataset": {"urls": [{"filename": "a", "url": "file:///a", "known_hash": "md5:0"}]}},
        {"dataset": {"source": "oxford_pets", "retries": 5}},
        {"train": {"lr": 0.1}},
        {},
    ],
)
def test_the_same_dataset_from_a_mirror_borrows_nothing(override):
    assert changes_dataset(BASE, override) == [] and borrowed_options(BASE, override) is None


def test_without_a_base_nothing_is_borrowed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert base_config() == {}
    assert borrowed_options(base_config(), {"dataset": {"source": "folder", "root": "d"}}) is None


@pytest.mark.slow
def test_snakemake_and_verify_refuse_the_same_partial_config_in_one_line(tmp_path):
    work = copy_workflow(tmp_path / "wf")
    (work / "cells.yaml").write_text(
        yaml.safe_dump(
            {
                "dataset": {"source": "folder", "root": str(tmp_path)},
                "remap": {"table": {0: 0, 255: 1}},
            }
        )
    )
    run = snakemake(work, "--configfile", "cells.yaml", "-n")
    assert run.returncode != 0
    verify = subprocess.run(
        [str(BIN / "segpipe"), "verify", "--configfile", "cells.yaml"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verify.returncode == 2 and verify.stderr.count("\n") == 1, verify.stderr
    line = verify.stderr.removeprefix("segpipe verify: error: ").strip()
    assert line.startswith("the config reads another dataset") and line in run.stderr + run.stdout


@pytest.mark.slow
def test_verify_layers_several_configfiles_as_snakemake_does(tmp_path):
    """config/test.yaml then a file that points it at a folder of 0/255 masks: the trimap table
    of test.yaml is still the table, so verify finds the values it cannot map, as remap would."""
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / "d" / folder).mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / "d" / "images" / f"{i}.png")
        Image.new("L", (8, 8), 255).save(tmp_path / "d" / "masks" / f"{i}.png")
    (tmp_path / "folder.yaml").write_text(
        yaml.safe_dump({"dataset": {"source": "folder", "root": str(tmp_path / "d"), "name": "x"}})
    )
    proc = subprocess.run(
        [
            str(BIN / "segpipe"),
            "verify",
            "--configfile",
            "config/test.yaml",
            "--configfile",
            str(tmp_path / "folder.yaml"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "mask values [255] are not in remap.table [1, 2, 3]" in proc.stdout
