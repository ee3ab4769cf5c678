"""The offline demo as a user runs it: ``snakemake --configfile config/demo.yaml`` on a fresh
copy of the workflow, timed, and the metrics of its two runs and the comparison's selection.

The copy holds the workflow only (no results), so every job runs; the venv is not rebuilt (the
wall time is the pipeline's, not pip's). docs/performance.md quotes this JSON through
tools/performance_figures.py.

    python tools/bench/bench_demo.py --out tools/bench/results/demo-cpu-2cores.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from record import machine, timed_snakemake, write_result

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = ["Snakefile", "rules", "scripts", "config", "envs", "profiles"]
CONFIG = "config/demo.yaml"
METRICS = ("mean_iou", "mean_dice", "pixel_accuracy", "foreground_iou")


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("torch", "segmentation-models-pytorch")}


def copy_workflow(dest: Path) -> None:
    for name in WORKFLOW:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)


def run_metrics(run_dir: Path) -> dict:
    """The headline metrics of one run's val and test evaluation."""
    out = {}
    for split in ("val", "test"):
        metrics = json.loads((run_dir / "evaluate" / split / "metrics.json").read_text())
        out[split] = {key: round(float(metrics[key]), 4) for key in METRICS if metrics.get(key)}
    return out


def leaderboard(work: Path) -> list[dict[str, str]]:
    with open(work / "results" / "compare" / "leaderboard.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_demo(work: Path, cores: int) -> dict:
    os.environ["HF_HUB_OFFLINE"] = "1"
    wall, cpu, proc = timed_snakemake(work, "--configfile", CONFIG, "--cores", str(cores))
    if proc.returncode != 0:
        raise RuntimeError(f"the demo failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    runs_dir = work / "results" / "runs"
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "runs": {run.name: run_metrics(run) for run in sorted(runs_dir.iterdir())},
        "leaderboard": leaderboard(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tools/bench/results/demo.json")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="segpipe-demo-") as tmp:
        work = Path(tmp)
        copy_workflow(work)
        result = {
            "benchmark": f"snakemake --configfile {CONFIG} --cores {args.cores} on a fresh copy",
            **machine(),
            "versions": versions(),
            "cores": args.cores,
            **run_demo(work, args.cores),
        }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
