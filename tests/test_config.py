"""Config validation: the shipped configs pass with defaults filled in; bad values name the option."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from segpipe.config import ConfigError, load_schema, validate_config

from conftest import REPO, copy_workflow, snakemake

CONFIGS = ["config.yaml", "demo.yaml", "test.yaml"]


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema(REPO / "config" / "schema.yaml")


@pytest.fixture(scope="module")
def rules(schema) -> list[str]:
    """The rules that have a resources entry in the schema."""
    names = sorted(schema["properties"]["resources"]["properties"])
    assert {"download", "remap", "split", "train", "predict", "evaluate", "report"} <= set(names)
    return names


def read_config(name: str) -> dict:
    with open(REPO / "config" / name, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.fixture
def base() -> dict:
    """A small valid config to break one option at a time."""
    return read_config("test.yaml")


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_are_valid(schema, rules, name):
    raw = read_config(name)
    cfg = validate_config(raw, schema)
    assert cfg["classes"] == raw["classes"]
    # Every rule has its resources, each with at least threads, memory and runtime.
    for rule in rules:
        assert {"threads", "mem_mb", "runtime"} <= set(cfg["resources"][rule]), rule
    for rule, given in raw["resources"].items():
        assert cfg["resources"][rule]["threads"] == given["threads"], rule
    # The remap table keeps integer keys and values, as YAML wrote them.
    assert cfg["remap"]["table"] == {1: 0, 2: 1, 3: 2}
    assert all(isinstance(k, int) for k in cfg["remap"]["table"])


def test_defaults_are_filled_in(schema):
    cfg = validate_config(read_config("test.yaml"), schema)
    # test.yaml sets augment.hflip only: the other augment fields come from the schema.
    assert cfg["train"]["augment"] == {
        "hflip": 0.5,
        "vflip": 0,
        "rotate": 0,
        "translate": 0,
        "scale": 0,
        "shear": 0,
        "color_jitter": 0,
    }
    assert cfg["train"]["optimizer"] == "adamw"
    assert cfg["train"]["decoder_dropout"] == 0
    assert cfg["train"]["class_weights"] is None
    assert cfg["ignore_index"] == 255
    assert cfg["remap"]["unmapped"] == "error"
    assert cfg["split"]["use_official"] is True
    assert cfg["dataset"]["retries"] == 3


def test_minimal_config_gets_every_section(schema, rules):
    cfg = validate_config({"dataset": {"source": "synthetic"}, "classes": ["a", "b", "c"]}, schema)
    assert cfg["train"]["arch"] == "Unet"
    assert cfg["train"]["augment"]["vflip"] == 0
    assert cfg["remap"]["table"] == {1: 0, 2: 1, 3: 2}
    train = cfg["resources"]["train"]
    assert (train["threads"], train["mem_mb"], train["runtime"]) == (8, 32000, 720)
    assert sorted(cfg["resources"]) == rules
    assert cfg["dataset"]["synthetic"]["n_images"] == 48


def test_validation_does_not_modify_the_input(schema, base):
    before = copy.deepcopy(base)
    validate_config(base, schema)
    assert base == before


def invalid(schema, cfg) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, schema)
    return str(info.value)


def test_unknown_top_level_key(schema, base):
    base["trian"] = {"epochs": 3}
    msg = invalid(schema, base)
    assert "'trian'" in msg
    assert "unknown" in msg


def test_unknown_nested_key(schema, base):
    base["train"]["lerning_rate"] = 0.1
    msg = invalid(schema, base)
    assert "train.lerning_rate" in msg
    assert "'lr'" in msg  # the valid keys are listed


def test_wrong_type(schema, base):
    base["train"]["epochs"] = "ten"
    msg = invalid(schema, base)
    assert "train.epochs" in msg
    assert "integer" in msg


def test_bad_enum_lists_choices(schema, base):
    base["train"]["loss"] = "bce"
    msg = invalid(schema, base)
    assert "train.loss" in msg
    for choice in ("ce", "dice", "ce+dice", "focal"):
        assert f"'{choice}'" in msg


def test_unknown_encoder_lists_valid_ones(schema, base):
    base["train"]["encoder"] = "resnet19"
    msg = invalid(schema, base)
    assert "train.encoder" in msg
    assert "resnet19" in msg
    assert "'resnet18'" in msg and "'resnet34'" in msg


def test_encoder_weights_not_available_for_encoder(schema, base):
    base["train"]["encoder_weights"] = "instagram"
    msg = invalid(schema, base)
    assert "train.encoder_weights" in msg
    assert "'instagram'" in msg
    assert "'imagenet'" in msg  # what resnet18 does have


def test_remap_class_out_of_range(schema, base):
    base["remap"]["table"] = {1: 0, 2: 1, 3: 3}  # 3 classes: ids 0..2
    msg = invalid(schema, base)
    assert "remap.table" in msg
    assert "class 3" in msg


def test_remap_may_map_to_ignore_index(schema, base):
    base["remap"]["table"] = {1: 0, 2: 1, 3: 2, 255: 255}
    assert validate_config(base, schema)["remap"]["table"][255] == 255


def test_class_weights_length_mismatch(schema, base):
    base["train"]["class_weights"] = [1.0, 2.0]
    msg = invalid(schema, base)
    assert "train.class_weights" in msg
    assert "2 weights for 3 classes" in msg


def test_folder_source_requires_root(schema, base):
    base["dataset"] = {"source": "folder"}
    msg = invalid(schema, base)
    assert "dataset" in msg
    assert "'root'" in msg
    base["dataset"]["root"] = "/data/mine"
    assert validate_config(base, schema)["dataset"]["root"] == "/data/mine"


@pytest.mark.parametrize("size", [48, 100])
def test_image_size_must_be_a_multiple_of_32(schema, base, size):
    base["train"]["image_size"] = size
    msg = invalid(schema, base)
    assert "train.image_size" in msg
    assert "multiple of 32" in msg


def test_all_errors_are_reported_together(schema, base):
    base["train"]["epochs"] = 0
    base["predict"]["batch_size"] = "big"
    msg = invalid(schema, base)
    assert "train.epochs" in msg
    assert "predict.batch_size" in msg


def test_every_train_option_reaches_train_model(schema):
    # scripts/train.py passes the validated train section as TrainConfig fields: a schema option
    # that TrainConfig lacks would fail only when the train rule runs.
    from segpipe.train import TrainConfig

    cfg = validate_config(read_config("test.yaml"), schema)
    assert set(cfg["train"]) == set(schema["properties"]["train"]["properties"])
    train = TrainConfig(**cfg["train"])
    assert train.encoder == "resnet18"
    assert train.augment["vflip"] == 0


def test_duplicate_class_names_are_rejected(schema, base):
    base["classes"] = ["bg", "bg", "border"]
    with pytest.raises(ConfigError, match=r"'classes': \['bg', 'bg', 'border'\] has non-unique"):
        validate_config(base, schema)


def test_nested_command_line_values_are_parsed(schema, base):
    """Snakemake gives --config 'train={image_size: 64, lr: 0.01}' values as strings."""
    base["train"].update(image_size="64", lr="0.01", augment={"hflip": "0.2"})
    base["remap"] = {"table": {"1": "0", "2": "1", "3": "2"}}
    cfg = validate_config(base, schema)
    assert cfg["train"]["image_size"] == 64 and cfg["train"]["lr"] == 0.01
    assert cfg["train"]["augment"]["hflip"] == 0.2
    assert cfg["remap"]["table"] == {1: 0, 2: 1, 3: 2}
    base["classes"] = ["0", "1", "2"]  # strings where strings belong stay strings
    assert validate_config(base, schema)["classes"] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-64", "'train.image_size': -64 is less than the minimum of 32"),
        ("abc", "'train.image_size': 'abc' is not of type 'integer'"),
        ("48", "'train.image_size': 48 is not a multiple of 32"),
    ],
)
def test_nested_command_line_values_fail_by_their_value(schema, base, value, message):
    base["train"]["image_size"] = value
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(base, schema)


def test_nested_override_on_the_command_line(tmp_path):
    """The real command line: a nested numeric override works, a negative one names the minimum."""
    work = copy_workflow(tmp_path)
    ok = snakemake(
        work, "-n", "--configfile", "config/test.yaml", "--config", "train={image_size: 64}"
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = snakemake(
        work, "-n", "--configfile", "config/test.yaml", "--config", "train={image_size: -64}"
    )
    assert bad.returncode != 0
    assert "'train.image_size': -64 is less than the minimum of 32" in bad.stdout + bad.stderr
