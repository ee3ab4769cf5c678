"""Shared test set-up: offline hubs, the real datasets beside the checkout, workflow runners."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from helpers import slow_guard
from helpers.repo import REPO, SHARED_DATA

# Property-based tests draw new examples on every local run (failing ones are kept in
# .hypothesis/ and tried first next time); CI draws the same ones on every run, so that whether a
# change lands does not depend on chance.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for pretrained weights in tests
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests write in their temporary folders and the clone only: the caches of segpipe (the model-name
# catalogue), Snakemake, matplotlib and torch go to the clone's .pytest_cache, not ~/.cache.
os.environ["XDG_CACHE_HOME"] = str(REPO / ".pytest_cache" / "xdg-cache")
os.environ.pop("SEGPIPE_CACHE_DIR", None)
# The modules that take longest, longest first (their summed durations in a full run on a 2-core
# CPU), in the order `make test`'s workers (pytest-xdist, --dist loadfile: a module's tests, which
# share its fixtures, stay on one worker) start them, so that no worker is left alone with a long
# module at the end. The rest follow in collection order.
LONGEST_FIRST = (
    "test_slurm",
    "test_search_brackets",
    "test_plan_runs",
    "test_search_runs",
    "test_dvc",
    "test_examples_other_layouts",
    "test_experiments",
    "test_examples_isbi",
    "test_search_example",
    "test_folds",
    "test_examples",
    "test_adversarial",
    "test_tta_infer",
    "test_benchmark",
    "test_dataset_reruns",
    "test_pipeline",
    "test_folder",
    "test_config_reruns",
)


def pytest_configure(config):
    """The slow tier's guard (slow_guard.py): an unmarked test that starts Snakemake or the
    segpipe command fails."""
    config.pluginmanager.register(slow_guard, "slow_guard")


def pytest_collection_modifyitems(config, items):
    """The longest modules first; tests marked ``cuda`` skip, with the reason, where torch sees
    no CUDA device."""
    import torch

    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device on this machine")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets in ../shared/data: skipped on a user's clone, required in CI."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real datasets at {SHARED_DATA}")
        pytest.skip(
            f"real datasets not found at {SHARED_DATA} (they sit beside the checkout in CI)"
        )
    return SHARED_DATA
