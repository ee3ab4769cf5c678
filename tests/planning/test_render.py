"""The planned config's text (one line per option, its comment beside or above it) and the
checks it must pass before it is written."""

from __future__ import annotations

import pytest
import yaml

from segpipe.planning.planner import PlanRequest, header, plan_fingerprint
from segpipe.planning.render import WIDTH, check_planned, flow, render
from segpipe.planning.rules import Target
from segpipe.workflow.config import ConfigError, load_schema

from helpers.fabricated import fingerprint, probe_model
from helpers.repo import REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "null"),
        (0.001, "0.001"),
        ([0, 2], "[0, 2]"),
        ({0: 0, 255: 1}, "{0: 0, 255: 1}"),
        ({"hflip": 0.5, "vflip": 0.0}, "{hflip: 0.5, vflip: 0.0}"),
        ("ce+dice", "ce+dice"),
        ("a: b, c", "'a: b, c'"),
        ("café {x}", "'café {x}'"),
    ],
)
def test_a_value_is_one_line_of_flow_yaml(value, text):
    assert flow(value) == text
    assert yaml.safe_load(f"key: {flow(value)}")["key"] == value


def test_comments_go_beside_short_lines_and_above_long_ones():
    config = {"run_name": "cells", "train": {"lr": 0.001, "augment": {"hflip": 0.5}}}
    comments = {"run_name": "the folder", "train.lr": "x" * (WIDTH - 10)}
    text = render(config, comments, ["planned"])
    lines = text.splitlines()
    assert lines[0] == "# planned" and "run_name: cells  # the folder" in lines
    at = lines.index("  lr: 0.001")
    assert lines[at - 1] == "  # " + "x" * (WIDTH - 10)
    assert all(len(line) <= WIDTH for line in lines if not line.lstrip().startswith("#"))
    assert yaml.safe_load(text) == config


def planned() -> tuple[str, dict]:
    plan = plan_fingerprint(
        fingerprint(pairs=200), PlanRequest({"root": "data/cells"}, target=Target()), probe_model()
    )
    return render(
        plan.config, plan.comments, header(plan.fingerprint, "c.yaml", "c.json")
    ), plan.config


def test_a_planned_config_passes_the_checks():
    text, config = planned()
    assert check_planned(text, config, SCHEMA)["run_name"] == "cells"


def test_a_config_that_would_borrow_an_option_from_config_yaml_is_refused():
    text, config = planned()
    del config["train"]["epochs"]
    text = yaml.safe_dump(config)
    with pytest.raises(
        ConfigError, match="leaves these options to config/config.yaml.*train.epochs"
    ):
        check_planned(text, config, SCHEMA)
    text, config = planned()
    del config["resources"]["remap"]  # config.yaml's differs from the schema's default
    with pytest.raises(ConfigError, match="borrows options from config/config.yaml"):
        check_planned(yaml.safe_dump(config), config, SCHEMA)


def test_a_text_that_does_not_read_back_as_planned_is_refused():
    text, config = planned()
    with pytest.raises(ConfigError, match="does not read back"):
        check_planned(text.replace("run_name: cells", "run_name: other"), config, SCHEMA)


def test_a_search_that_cannot_run_is_refused():
    text, config = planned()
    config["search"] = {
        "sample": 2,
        "min_epochs": 1,
        "max_epochs": 9,
        "eta": 3,
        "space": {"train.lr": {"log_uniform": [0.001, 0.01]}},
    }
    with pytest.raises(ConfigError, match="invalid planned search"):
        check_planned(yaml.safe_dump(config), config, SCHEMA)
