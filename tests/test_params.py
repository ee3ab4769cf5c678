"""Which options reach a job untracked: the split of a section, the Untracked mapping that
Snakemake passes on without comparing, and a run's summary without them."""

from __future__ import annotations

import pytest

from segpipe.params import UNTRACKED_OPTIONS, Untracked, run_summary, tracked, untracked
from segpipe.workflow.config import load_schema

from conftest import REPO


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
