"""What the benchmark scripts share: the machine record, timing a Snakemake call, the costs of
its rules' jobs, the JSON."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import time
from datetime import date
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def machine() -> dict[str, str]:
    """Where and when a figure was measured."""
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": date.today().isoformat(),
        "python": platform.python_version(),
    }


def timed_snakemake(work: Path, *args: str) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run the venv's snakemake in ``work``: wall seconds, CPU seconds (user + system of the
    process and its children) and the finished process."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=work, capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu, proc


def write_result(out: Path, result: dict) -> None:
    """Write ``result`` as indented JSON to ``out`` and print it."""
    text = json.dumps(result, indent=2) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text, end="")


def export(rev: str, dest: Path) -> str:
    """The files of commit ``rev`` in ``dest``; returns the full commit hash."""
    commit = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    tar = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(dest, filter="tar")
    return commit


def rule_costs(work: Path) -> dict[str, dict[str, float]]:
    """Per rule: jobs, wall seconds and CPU seconds, from its benchmark files."""
    costs: dict[str, dict[str, float]] = {}
    for tsv in sorted((work / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(work / "benchmarks").parts[0]
        with tsv.open() as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        entry = costs.setdefault(rule, {"jobs": 0, "s": 0.0, "cpu_s": 0.0})
        entry["jobs"] += 1
        entry["s"] = round(entry["s"] + float(row["s"]), 2)
        entry["cpu_s"] = round(entry["cpu_s"] + float(row["cpu_time"]), 2)
    return costs
