"""Shared test set-up: offline hubs, the real datasets beside the checkout, workflow runners."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import slow_guard
from hypothesis import settings

# Property-based tests draw new examples on every local run (failing ones are kept in
# .hypothesis/ and tried first next time); CI draws the same ones on every run, so that whether a
# change lands does not depend on chance.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]

os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for pretrained weights in tests
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests write in their temporary folders and the clone only: the caches of segpipe (the model-name
# catalogue), Snakemake, matplotlib and torch go to the clone's .pytest_cache, not ~/.cache.
os.environ["XDG_CACHE_HOME"] = str(REPO / ".pytest_cache" / "xdg-cache")
os.environ.pop("SEGPIPE_CACHE_DIR", None)
SHARED_DATA = Path(os.environ.get("SEGPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
WORKFLOW_FILES = ["Snakefile", "rules", "scripts", "config", "envs", "profiles"]
BIN = Path(sys.executable).parent


def _tiny_model() -> dict:
    import yaml

    train = yaml.safe_load((REPO / "config" / "test.yaml").read_text(encoding="utf-8"))["train"]
    return {key: train[key] for key in ("arch", "encoder", "encoder_depth", "decoder_channels")}


# The model every test trains unless the model itself is what it tests: config/test.yaml's tiny
# UNet (about 0.37 M parameters; checkpoints of a few MB, where a full UNet-ResNet18's are
# 80-140 MB). Train options as TrainConfig and the config's train section take them.
TINY_MODEL = _tiny_model()


def _train_defaults() -> dict:
    from segpipe.workflow.config import load_schema, section_defaults

    return section_defaults(load_schema(REPO / "config" / "schema.yaml"), "train")


# What a config that leaves the train options out gets: config/schema.yaml's defaults, which
# TrainConfig, taking every option, does not repeat. Tests that call train_model start from it.
TRAIN_DEFAULTS = _train_defaults()


# The modules that take longest, in the order `make test`'s two workers (pytest-xdist,
# --dist loadfile: a module's tests, which share its fixtures, stay on one worker) start them, so
# that neither is left alone with a long module at the end. The rest follow in collection order.
LONGEST_FIRST = (
    "test_slurm",
    "test_examples",
    "test_examples_isbi",
    "test_folds",
    "test_dvc",
    "test_experiments",
    "test_examples_other_layouts",
    "test_tta_infer",
    "test_adversarial",
    "test_dataset_reruns",
    "test_pipeline",
    "test_scale",
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


def copy_workflow(dest: Path) -> Path:
    """Copy the workflow (not results) into ``dest`` so a test runs it as a user would."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the venv's snakemake in ``workdir``; output captured as text."""
    return subprocess.run(
        [str(BIN / "snakemake"), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )


def planned_rules(workdir: Path, *args: str) -> dict[str, int]:
    """Rule name -> job count that ``snakemake -n`` plans (empty when nothing is to be done)."""
    proc = snakemake(workdir, "-n", "--quiet", "rules", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def planned_jobs(workdir: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job ``snakemake -n`` plans, ``all`` left out."""
    proc = snakemake(workdir, "-n", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = []
    for m in re.finditer(
        r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)+)", proc.stdout, re.M
    ):
        fields = re.search(r"^    wildcards: (.*)$", m[2], re.M)
        wildcards = dict(re.findall(r"(\w+)=([^,]+)", fields[1])) if fields else {}
        if m[1] != "all":
            jobs.append((m[1], wildcards))
    return jobs
