"""Every option's class (a model's identity, assessment, nothing, runs) and which options reach
a job untracked: the split of a section, the Untracked mapping that Snakemake passes on without
comparing, and a run's summary without them."""

from __future__ import annotations

import pytest

from segpipe.params import (
    MODEL,
    NOTHING,
    OPTION_CLASS_NAMES,
    OPTION_CLASSES,
    UNTRACKED_OPTIONS,
    Untracked,
    option_class,
    run_summary,
    tracked,
    untracked,
)
from segpipe.workflow.config import load_schema

from helpers.config import resolve
from helpers.repo import REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def schema_options(node: dict = SCHEMA, path: str = "") -> list[str]:
    """The dotted path of every option the schema declares, sections and nested options too."""
    found = []
    for name, sub in resolve(node).get("properties", {}).items():
        dotted = f"{path}.{name}".lstrip(".")
        found += [dotted, *schema_options(sub, dotted)]
    return found


def test_every_schema_option_has_a_class() -> None:
    """A new option fails here until segpipe.params.OPTION_CLASSES says whether it trains the
    model, only changes how it is assessed or shown, changes nothing, or declares runs."""
    unclassified = []
    for option in schema_options():
        try:
            assert option_class(option) in OPTION_CLASS_NAMES
        except KeyError:
            if not any(o.startswith(option + ".") for o in OPTION_CLASSES):
                unclassified.append(option)  # a section that mixes classes names each option
    assert not unclassified, f"options without a class in OPTION_CLASSES: {unclassified}"


def test_every_class_entry_is_a_schema_option_and_no_section_mixes_whole_and_parts() -> None:
    options = set(schema_options())
    assert set(OPTION_CLASSES) <= options, set(OPTION_CLASSES) - options
    for entry in OPTION_CLASSES:
        inner = [o for o in OPTION_CLASSES if o.startswith(entry + ".")]
        assert not inner, f"{entry} is classified whole and part by part: {inner}"


def test_a_new_option_of_a_mixed_section_has_no_class_but_one_of_a_whole_section_has() -> None:
    with pytest.raises(KeyError, match="train.new_option"):
        option_class("train.new_option")
    assert option_class("resources.train.mem_mb") == NOTHING
    assert option_class("split.new_option") == MODEL
    assert option_class("train.augment.hflip") == MODEL


def test_the_untracked_options_are_those_that_change_nothing() -> None:
    assert UNTRACKED_OPTIONS == {
        "dataset": ("retries", "timeout"),
        "train": ("num_workers", "log_to", "log_images_every"),
        "predict": ("batch_size",),
    }


def test_every_untracked_option_is_a_schema_option() -> None:
    schema = load_schema(REPO / "config" / "schema.yaml")
    for section, names in UNTRACKED_OPTIONS.items():
        options = schema["properties"][section]["properties"]
        assert set(names) <= set(options), f"{section}: {set(names) - set(options)}"


@pytest.mark.parametrize("section", [*UNTRACKED_OPTIONS, "split", "no_such_section"])
def test_tracked_and_untracked_split_a_section_in_two(section: str) -> None:
    names = UNTRACKED_OPTIONS.get(section, ())
    options = {"seed": 1, "size": [1, 2], **{name: 3 for name in names}}
    kept, passed = tracked(section, options), untracked(section, options)
    assert kept.keys() | passed.keys() == options.keys()
    assert not kept.keys() & passed.keys()
    assert set(passed) == set(names)
    assert dict(passed) == {name: options[name] for name in names}


def test_untracked_is_a_read_only_mapping_but_no_builtin_type() -> None:
    """Snakemake records params of built-in types only: an Untracked param is left out."""
    value = untracked("train", {"num_workers": 4, "lr": 0.1})
    assert isinstance(value, Untracked) and not isinstance(value, dict)
    assert dict(value) == {"num_workers": 4} and len(value) == 1
    assert repr(value) == "Untracked({'num_workers': 4})"
    with pytest.raises(TypeError):
        value["num_workers"] = 8  # type: ignore[index]


def test_run_summary_leaves_out_what_no_result_depends_on() -> None:
    cfg = {
        "train": {"lr": 0.1, "num_workers": 4, "log_to": ["tensorboard"]},
        "dataset": {"source": "folder", "retries": 3, "timeout": 60},
        "predict": {"batch_size": 8, "tta": ["hflip"]},
        "split": {"folds": 5, "val_fraction": 0.2, "seed": 0},
        "resources": {"train": {"mem_mb": 1}},
        "compare": {"gallery_size": 4},
        # Where the weights are cached: a report must not rerun when a cluster moves it.
        "pretrained": {"cache": "/shared/pretrained"},
    }
    assert run_summary(cfg) == {
        "train": {"lr": 0.1},
        "dataset": {"source": "folder"},
        "predict": {"tta": ["hflip"]},
        "split": {"folds": 5, "seed": 0},
    }
    without_folds = {"split": {"folds": None, "val_fraction": 0.2}}
    assert run_summary(without_folds) == without_folds  # val_fraction is used without folds


def test_dotted_options_get_set_and_tell_a_missing_one() -> None:
    """One home for a dotted option in a nested config (experiments, search, plan, config)."""
    from segpipe.params import get_dotted, has_dotted, set_dotted

    cfg: dict = {"train": {"augment": {"hflip": 0.5}, "lr": None}, "classes": ["a"]}
    assert get_dotted(cfg, "train.augment.hflip") == 0.5
    assert get_dotted(cfg, "train") == {"augment": {"hflip": 0.5}, "lr": None}
    assert has_dotted(cfg, "train.lr")  # given as null is given
    for missing in ("train.epochs", "train.augment.vflip", "classes.name", "nope", "train.lr.x"):
        assert not has_dotted(cfg, missing)
        with pytest.raises(KeyError, match=missing.replace(".", r"\.")):
            get_dotted(cfg, missing)
    set_dotted(cfg, "train.augment.vflip", 0.25)
    set_dotted(cfg, "resources.train.mem_mb", 4000)
    set_dotted(cfg, "seed", 1)
    assert cfg["train"]["augment"] == {"hflip": 0.5, "vflip": 0.25}
    assert cfg["resources"] == {"train": {"mem_mb": 4000}} and cfg["seed"] == 1
