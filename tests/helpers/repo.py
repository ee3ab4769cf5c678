"""The repository and its workflow as the tests use them: where things are, the tiny model and
the train defaults every test starts from, and runners of the workflow copied as a user has it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
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
