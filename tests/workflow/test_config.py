"""Config validation: the shipped configs pass with defaults filled in; bad values name the option."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from segpipe.workflow.config import ConfigError, load_schema, section_defaults, validate_config

from helpers.repo import REPO, copy_workflow, snakemake

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


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("a\x1eb", "train.a\\x1eb"),
        ("a\u2028b", "train.a\\u2028b"),
        ("x\ny", "train.x\\ny"),
        (7, "train.7"),
    ],
)
def test_an_unknown_key_is_named_on_one_line_with_invisible_characters_escaped(
    schema, base, key, shown
):
    """Line separators (\\x1e, \\u2028, \\n) in a key must not break the one-line message; a
    number among the unknown keys must not break the sorting of their names."""
    base["train"][key] = 1
    base["train"]["zz"] = 1
    msg = invalid(schema, base)
    assert f"config option '{shown}' is unknown" in msg
    assert len(msg.splitlines()) == 2  # "invalid config:" and the one problem


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


@pytest.mark.parametrize("arch", ["Linknet", "FPN", "PSPNet", "Segformer", "DPT"])
def test_decoder_channels_for_an_architecture_without_them_fail_before_any_job(schema, base, arch):
    """Refused with the config, not in the train job that would build the model."""
    base["train"].update(arch=arch, encoder="resnet18", encoder_depth=3, decoder_channels=[8, 8, 8])
    msg = invalid(schema, base)
    assert f"config option 'train.decoder_channels': {arch} does not take it; set it to null" in msg
    base["train"]["decoder_channels"] = None
    assert validate_config(base, schema)["train"]["arch"] == arch


def test_encoder_weights_not_available_for_encoder(schema, base):
    base["train"]["encoder"] = "resnet18"
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
    from segpipe.training.train_job import TrainConfig

    cfg = validate_config(read_config("test.yaml"), schema)
    assert set(cfg["train"]) == set(schema["properties"]["train"]["properties"])
    train = TrainConfig(**cfg["train"])
    assert (train.encoder, train.encoder_depth) == ("tu-resnet10t", 3)
    assert train.decoder_channels == [16, 8, 4]
    assert train.augment["vflip"] == 0


def test_train_config_has_no_defaults_of_its_own(schema):
    """A caller of train_model passes every option: the schema holds the defaults, once, and
    section_defaults gives what a config that leaves the section out gets, nested defaults
    (train.augment's) filled in."""
    import dataclasses

    from segpipe.training.train_job import TrainConfig

    config = read_config("test.yaml")
    del config["train"]
    defaults = validate_config(config, schema, check_models=False)["train"]
    assert section_defaults(schema, "train") == defaults
    fields = dataclasses.fields(TrainConfig)
    assert {f.name for f in fields} == set(defaults)
    assert all(f.default is f.default_factory is dataclasses.MISSING for f in fields)
    assert TrainConfig(**defaults).augment["hflip"] == 0.5
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'lr'"):
        TrainConfig(**{k: v for k, v in defaults.items() if k != "lr"})


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


SEARCH = {"min_epochs": "1", "max_epochs": "9", "sample": "3"}


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ({"train.lr": {"uniform": ["0.001", "0.01"]}}, {"train.lr": {"uniform": [0.001, 0.01]}}),
        (
            {"train.lr": {"log_uniform": ["1.0e-4", "0.1"]}},
            {"train.lr": {"log_uniform": [1e-4, 0.1]}},
        ),
        ({"train.batch_size": {"int": ["2", "8"]}}, {"train.batch_size": {"int": [2, 8]}}),
        ({"train.batch_size": {"int": ["2", "8.0"]}}, {"train.batch_size": {"int": [2, 8]}}),
        # choice takes any value: its strings stay strings (each run's config reads them).
        (
            {"train.encoder": {"choice": ["resnet18", "0.5"]}},
            {"train.encoder": {"choice": ["resnet18", "0.5"]}},
        ),
    ],
)
def test_nested_command_line_values_inside_a_search_range_are_parsed(schema, base, space, expected):
    """--config 'search={..., space: {train.lr: {uniform: [0.001, 0.01]}}}' gives strings,
    under a oneOf of the schema: they are read as the numbers they are."""
    cfg = validate_config({**base, "search": {**SEARCH, "space": space}}, schema)
    assert cfg["search"]["space"] == expected
    assert cfg["search"]["min_epochs"] == 1 and cfg["search"]["sample"] == 3


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("predict", "ensemble", "null", None),  # an enum of a string and null
        ("train", "encoder_weights", "null", None),  # a string or null
        ("train", "encoder_weights", "~", None),
        ("train", "channels_last", "null", None),
        ("compare", "title", "null", None),
        ("dataset", "split_lists", {"trainval": "null", "test": "lists/test.txt"}, None),
        ("train", "log_to", ["tensorboard"], ["tensorboard"]),
    ],
)
def test_nested_command_line_nulls_are_null(schema, base, section, key, value, expected):
    base.setdefault(section, {})[key] = value
    cfg = validate_config(base, schema)
    if isinstance(value, dict):
        assert cfg[section][key]["trainval"] is None
        assert cfg[section][key]["test"] == "lists/test.txt"
    else:
        assert cfg[section][key] == expected


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.lr": {"choice": []}}, "'search.space.train.lr.choice': [] should be non-empty"),
        (
            {"train.batch_size": {"int": [2, 8.5]}},
            "'search.space.train.batch_size.int.1': 8.5 is not of type 'integer'",
        ),
        ({"train.lr": {"uniform": [1]}}, "'search.space.train.lr.uniform': [1] is too short"),
        (
            {"train.lr": {"normal": [0, 1]}},
            "'search.space.train.lr': give exactly one of log_uniform, uniform, int or choice "
            "(got normal)",
        ),
        (
            {"train.lr": {"uniform": [0, 1], "int": [0, 1]}},
            "'search.space.train.lr': give exactly one of log_uniform, uniform, int or choice "
            "(got int, uniform)",
        ),
        (
            {"train.lr": {}},
            "'search.space.train.lr': give exactly one of log_uniform, uniform, int or choice (got none)",
        ),
        ({"train.lr": "0.1"}, "'search.space.train.lr': give exactly one of log_uniform"),
        (
            {"train.lr": {"uniform": ["a", 1]}},
            "'search.space.train.lr.uniform.0': 'a' is not of type 'number'",
        ),
        (
            {"classes": {"choice": [["a", "b", "c"]]}},
            "'search.space': 'classes' is not a dotted option of a run (section.option, e.g. "
            "train.lr)",
        ),
    ],
)
def test_a_bad_search_range_names_the_problem(schema, base, space, message):
    with pytest.raises(ConfigError) as exc:
        validate_config({**base, "search": {**SEARCH, "space": space}}, schema)
    assert f"config option {message}" in str(exc.value)
    assert "is not valid under any of the given schemas" not in str(exc.value)
    assert "does not match" not in str(exc.value)


def test_a_grid_key_that_is_no_dotted_option_says_so(schema, base):
    with pytest.raises(ConfigError) as exc:
        validate_config({**base, "grid": {"lr": [0.1]}}, schema)
    assert "config option 'grid': 'lr' is not a dotted option of a run" in str(exc.value)


@pytest.mark.slow
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
    search = (
        "search={min_epochs: 2, max_epochs: 6, sample: 3, seed: 1, "
        "space: {train.lr: {uniform: [0.001, 0.01]}, train.batch_size: {int: [2, 4]}}}"
    )
    drawn = snakemake(work, "-n", "--configfile", "config/test.yaml", "--config", search)
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    assert "search_train" in drawn.stdout


# --- whole floats for integer options ------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train", "image_size", 32.0, 32),
        ("train", "epochs", 2.0, 2),
        ("train", "decoder_channels", [16.0, 8.0, 4.0], [16, 8, 4]),
        ("train", "num_workers", 0.0, 0),
        ("split", "folds", 3.0, 3),
        ("dataset", "synthetic", {"n_images": 24.0, "min_size": 40.0}, None),
        ("resources", "train", {"threads": 2.0, "mem_mb": 2000.0, "runtime": 10.0}, None),
        ("evaluate", "foreground_classes", [0.0, 2.0], [0, 2]),
        ("train", "image_size", "32.0", 32),  # --config 'train={image_size: 32.0}'
    ],
)
def test_whole_floats_for_integer_options_become_ints(schema, base, section, key, value, expected):
    base[section][key] = value
    got = validate_config(base, schema)[section][key]
    if expected is None:  # a nested section: the given options
        got, expected = {k: got[k] for k in value}, {k: int(v) for k, v in value.items()}
    assert got == expected
    leaves = got.values() if isinstance(got, dict) else got if isinstance(got, list) else [got]
    assert all(type(v) is int for v in leaves)


def test_whole_floats_in_the_remap_table_and_colours_become_ints(schema, base):
    base["ignore_index"] = 255.0
    base["remap"] = {"table": {1.0: 0.0, 2: 1.0, 3: 2}, "ignore_value": 0.0}
    cfg = validate_config(base, schema)
    assert cfg["remap"]["table"] == {1: 0, 2: 1, 3: 2}
    assert all(type(k) is int and type(v) is int for k, v in cfg["remap"]["table"].items())
    assert type(cfg["remap"]["ignore_value"]) is int and type(cfg["ignore_index"]) is int
    base["remap"] = {"colors": [{"color": [0.0, 0, 255.0], "class": 1.0}]}
    entry = validate_config(base, schema)["remap"]["colors"][0]
    assert entry == {"color": [0, 0, 255], "class": 1}
    assert all(type(v) is int for v in [*entry["color"], entry["class"]])


@pytest.mark.parametrize(
    ("section", "key", "value", "option"),
    [
        ("train", "image_size", 32.5, "train.image_size"),
        ("train", "image_size", "32.5", "train.image_size"),
        ("train", "decoder_channels", [64, 32, 16, 8, 4.5], "train.decoder_channels.4"),
        ("train", "epochs", True, "train.epochs"),
        ("split", "use_official", 1, "split.use_official"),
        ("split", "use_official", 1.0, "split.use_official"),
        ("train", "lr", False, "train.lr"),
        ("remap", "table", {1: 0.5}, "remap.table.1"),
        ("remap", "table", {1.5: 0}, "remap.table"),
        ("remap", "table", {True: 0}, "remap.table"),
        ("remap", "colors", [{"color": [0, 0, 255], "class": 1.5}], "remap.colors.0.class"),
    ],
)
def test_non_whole_floats_and_booleans_for_numbers_fail(schema, base, section, key, value, option):
    base[section][key] = value
    with pytest.raises(ConfigError, match=f"config option '{re.escape(option)}'"):
        validate_config(base, schema)


# --- options that contradict each other ----------------------------------------------------


@pytest.mark.parametrize(
    ("change", "options"),
    [
        # A raw value both mapped to a class and ignored: the class would be ignored everywhere.
        (
            {"remap": {"table": {0: 0, 255: 1}, "ignore_value": 255}},
            ("remap.table", "remap.ignore_value"),
        ),
        (
            {"remap": {"colors": [{"color": [0, 0, 0], "class": 0}], "ignore_value": 255}},
            ("remap.ignore_value", "remap.colors"),
        ),
        (
            {"train": {"class_weights": [1, 2, 1], "loss": "dice"}},
            ("train.class_weights", "train.loss"),
        ),
        (
            {"train": {"class_weights": [1, 2, 1], "loss": "focal"}},
            ("train.class_weights", "train.loss"),
        ),
        ({"train": {"class_weights": [0, 0, 0], "loss": "ce"}}, ("train.class_weights",)),
        (
            {"train": {"epochs": 4, "schedule_epochs": 3}},
            ("train.schedule_epochs", "train.epochs"),
        ),
        (
            {"evaluate": {"foreground_classes": [0, 1, 2]}},
            ("evaluate.foreground_classes", "classes"),
        ),
        ({"evaluate": {"foreground_classes": []}}, ("evaluate.foreground_classes", "classes")),
    ],
)
def test_contradicting_options_fail_naming_both(schema, base, change, options):
    for section, values in change.items():
        # remap's table and colours are alternatives: a remap section replaces the test's.
        base[section] = values if section == "remap" else {**base.get(section, {}), **values}
    msg = invalid(schema, base)
    for option in options:
        assert option in msg.splitlines()[1], msg


@pytest.mark.parametrize("schedule_epochs", [None, 4, 12])
def test_a_schedule_as_long_as_the_epochs_or_longer_passes(schema, base, schedule_epochs):
    base["train"] = {**base["train"], "epochs": 4, "schedule_epochs": schedule_epochs}
    assert validate_config(base, schema)["train"]["schedule_epochs"] == schedule_epochs


@pytest.mark.parametrize("value", [0, -2, 2.5, "eight", True, [8]])
def test_a_schedule_length_that_is_no_epoch_count_fails_naming_the_option(schema, base, value):
    base["train"] = {**base["train"], "epochs": 1, "schedule_epochs": value}
    assert "train.schedule_epochs" in invalid(schema, base)


@pytest.mark.parametrize(
    "remap",
    [
        {"table": {0: 0, 1: 1, 255: 255}, "ignore_value": 255},  # mapped to ignore and ignored
        {"table": {0: 0, 1: 1, 2: 1}, "ignore_value": 255},  # two raw values, one class
        {"table": {0: 0, 1: 1}, "ignore_value": 255},
    ],
)
def test_consistent_remap_options_pass(schema, base, remap):
    base["remap"] = remap
    validate_config(base, schema)


@pytest.mark.slow
def test_a_mapped_and_ignored_value_fails_before_any_job_runs(tmp_path):
    work = copy_workflow(tmp_path)
    proc = snakemake(
        work, "-n", "--configfile", "config/test.yaml", "--config", "remap={ignore_value: 3}"
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config options 'remap.table' and 'remap.ignore_value': value 3 maps" in out
    assert "Traceback" not in out


@pytest.mark.slow
def test_a_key_given_twice_in_a_configfile_fails_before_any_job_runs(tmp_path):
    """Snakemake keeps the last of the two silently; the Snakefile reads every --configfile."""
    work = copy_workflow(tmp_path)
    (work / "config" / "twice.yaml").write_text("train: {epochs: 1}\ntrain: {lr: 0.5}\n")
    proc = snakemake(work, "-n", "--configfile", "config/test.yaml", "config/twice.yaml")
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "twice.yaml' is not valid YAML: line 2, column 1: key 'train' given twice" in out
    assert "Traceback" not in out


# --- config files and paths ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  lr: [1, 2\n", r"config file '.*bad.yaml' is not valid YAML: line 3, column 1"),
        ("train:\n\tlr: 1\n", r"config file '.*bad.yaml' is not valid YAML: line 2, column 1"),
        ("", r"config file '.*bad.yaml' is empty"),
        ("# only a comment\n", r"config file '.*bad.yaml' is empty"),
        ("- a\n- b\n", r"config file '.*bad.yaml' holds a list, not a mapping"),
        (
            "train: {epochs: 1}\nrun_name: x\ntrain: {lr: 0.5}\n",
            r"line 3, column 1: key 'train' given twice \(first on line 1\)",
        ),
        ("train: {lr: 1, epochs: 2, lr: 2}\n", r"line 1, column 27: key 'lr' given twice"),
        ("remap:\n  table:\n    1: 0\n    1: 1\n", r"line 4, column 5: key 1 given twice"),
    ],
)
def test_bad_config_files_are_named_with_the_line(tmp_path, text, message):
    from segpipe.workflow.config import load_config_file

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config_file(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"config file '.*missing.yaml' not found"):
        load_config_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("dataset", "root", "~/data"),
        ("dataset", "images_dir", "~/data/img"),
        ("dataset", "masks_dir", "~/data/masks"),
        ("dataset", "split_lists", {"trainval": "~/lists/a.txt", "test": "~/lists/b.txt"}),
        ("infer", "images", "~/new images"),
    ],
)
def test_a_leading_tilde_is_the_home_folder_in_every_path_option(
    schema, base, monkeypatch, tmp_path, section, key, value
):
    monkeypatch.setenv("HOME", str(tmp_path))
    base["dataset"].update(source="folder", root="data")
    base.setdefault(section, {})[key] = value
    got = validate_config(base, schema)[section][key]
    for path in got.values() if isinstance(got, dict) else [got]:
        assert path.startswith(str(tmp_path) + "/") and "~" not in path


def test_path_options_are_those_the_schema_marks(schema):
    """Every option whose description speaks of a folder or file path is marked format: path,
    so its ~ is expanded."""
    marked, unmarked = [], []

    def walk(node, path):
        for name, sub in node.get("properties", {}).items():
            dotted = f"{path}.{name}".lstrip(".")
            text = sub.get("description", "")
            if "string" in str(sub.get("type")) and re.search(r"relative to|^List of", text):
                (marked if sub.get("format") == "path" else unmarked).append(dotted)
            walk(sub, dotted)

    walk(schema, "")
    assert not unmarked
    assert {"dataset.root", "infer.images", "dataset.images_dir"} <= set(marked)


BAD_FILES = {
    "syntax.yaml": ("train:\n  lr: [1, 2\n", "is not valid YAML: line 3, column 1"),
    "empty.yaml": ("", "is empty"),
}


def write_bad_files(folder) -> list:
    for name, (text, _) in BAD_FILES.items():
        (folder / name).write_text(text)
    return [folder / name for name in BAD_FILES]


def test_segpipe_verify_names_a_bad_config_file_in_one_line(tmp_path, capsys):
    from segpipe.cli import main

    for path in [*write_bad_files(tmp_path), tmp_path / "missing.yaml"]:
        assert main(["verify", "--configfile", str(path)]) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"config file '{path}'" in err, err
        assert BAD_FILES.get(path.name, ("", "not found"))[1] in err


def test_the_config_file_check_names_each_bad_file(tmp_path, capsys):
    from segpipe.workflow.config import main
    from segpipe.workflow.experiments import main as experiments_main

    paths = [*write_bad_files(tmp_path), tmp_path / "missing.yaml"]
    assert main([str(REPO / "config" / "test.yaml"), *map(str, paths)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    for line, path in zip(lines, paths, strict=True):
        assert f"config file '{path}'" in line
    assert main([str(REPO / "config" / "test.yaml")]) == 0
    assert experiments_main(["--reports", str(paths[0])]) == 2
    assert "is not valid YAML: line 3" in capsys.readouterr().err


@pytest.mark.slow
def test_a_broken_workflow_config_is_named_before_any_job_runs(tmp_path):
    work = copy_workflow(tmp_path)
    (work / "config" / "config.yaml").write_text("train:\n  lr: 0.1\n    epochs: 2\n")
    proc = snakemake(work, "-n", "--configfile", "config/test.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config file 'config/config.yaml' is not valid YAML: line 3, column 11" in out, out
    assert "Traceback" not in out


def test_make_run_checks_the_config_files_before_snakemake_reads_them():
    """Snakemake reads --configfile before the Snakefile: its YAML error names no file or line."""
    recipe = (REPO / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    check, run = recipe.index("-m segpipe.workflow.config $(CONFIG)"), recipe.index("snakemake")
    assert check < run


@pytest.mark.parametrize(
    ("section", "key", "value", "option"),
    [
        ("train", "lr", float("nan"), "train.lr"),
        ("train", "image_scale", float("inf"), "train.image_scale"),
        ("dataset", "timeout", float("inf"), "dataset.timeout"),
        ("train", "class_weights", [1.0, float("nan"), 1.0], "train.class_weights.1"),
    ],
)
def test_nan_and_infinite_numbers_fail_naming_the_option(schema, base, section, key, value, option):
    """JSON Schema's bounds let nan through (nan < 0 and nan > 1 are both false)."""
    base[section][key] = value
    with pytest.raises(ConfigError, match=f"config option '{re.escape(option)}': (nan|inf)"):
        validate_config(base, schema)


def test_synthetic_sizes_that_contradict_name_both(schema, base):
    base["dataset"]["synthetic"].update(min_size=64, max_size=48)
    msg = invalid(schema, base)
    assert "'dataset.synthetic.min_size' and 'dataset.synthetic.max_size'" in msg


@pytest.mark.slow
def test_a_whole_float_on_the_command_line_gives_integer_paths(tmp_path):
    from helpers.repo import planned_jobs

    work = copy_workflow(tmp_path)
    args = ("--configfile", "config/test.yaml", "--config", "train={image_size: 64.0}")
    sizes = {w["size"] for rule, w in planned_jobs(work, *args) if rule == "preprocess"}
    assert sizes == {"64"}
