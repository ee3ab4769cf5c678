"""Scale of experiments: the no-op ``snakemake -n`` of a complete single run and of a complete
16-run grid.

A user reruns ``snakemake`` (or ``-n``) after every edit; with nothing to do, the cost is building
the DAG: validating every run's config, checking model names, and comparing each job's outputs,
params and code with Snakemake's records. The tiny CI config is run once for real; the grid's
16 runs (train.lr x train.loss) get that run's outputs copied into their folders and
``snakemake --touch`` records them as up to date, so both dry runs have nothing to do. Each dry
run is a fresh process, repeated; the JSON holds the median wall and CPU time (user + system of
the process and its children). Goals: the single run at most 3 s of CPU, the grid at most twice
the single run.

    python tools/bench/bench_runs.py --out tools/bench/results/runs-cpu-2cores.json
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from record import machine, timed_snakemake, write_result

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = ["Snakefile", "rules", "scripts", "config", "envs", "profiles"]
TINY = "config/test.yaml"
GRID = {
    "train.lr": [0.001, 0.003, 0.01, 0.03],
    "train.loss": ["ce", "dice", "ce+dice", "focal"],
}


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    proc = timed_snakemake(work, *args)[2]
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake {args} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return proc


def grid_names() -> list[str]:
    sys.path.insert(0, str(REPO / "src"))
    from segpipe.workflow.experiments import grid_runs

    return [name for name, _ in grid_runs(GRID)]


def complete_grid(work: Path) -> tuple[str, ...]:
    """Copy the finished single run into every run of the grid and record it as up to date."""
    source = work / "results" / "runs" / "ci-tiny"
    targets = []
    for name in grid_names():
        shutil.copytree(source, work / "results" / "runs" / name, symlinks=True)
        targets += [f"results/runs/{name}/report/report.html"]
        targets += [f"results/runs/{name}/evaluate/{s}/metrics.json" for s in ("val", "test")]
    (work / "config" / "grid.yaml").write_text(yaml.safe_dump({"grid": GRID}, sort_keys=False))
    args = ("--configfile", TINY, "config/grid.yaml")
    # Targets first: --configfile takes every value after it.
    snakemake(work, *targets, "--touch", "--cores", "1", *args)
    # The comparison is built for real: it is a job of the grid like any other.
    snakemake(work, "--cores", "2", *args)
    return args


def noop_dry_run(work: Path, args: tuple[str, ...], repeats: int) -> dict:
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu, proc = timed_snakemake(work, "-n", *args)
        if proc.returncode != 0 or "Nothing to be done" not in proc.stdout + proc.stderr:
            raise RuntimeError(f"not a no-op:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        walls.append(wall)
        cpus.append(cpu)
    return {
        "wall_s": round(statistics.median(walls), 3),
        "cpu_s": round(statistics.median(cpus), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in WORKFLOW:
            src = REPO / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, work / name)
        snakemake(work, "--cores", "2", "--configfile", TINY)
        single = noop_dry_run(work, ("--configfile", TINY), args.repeats)
        grid = noop_dry_run(work, complete_grid(work), args.repeats)
    result = {
        "benchmark": "no-op snakemake -n of a complete run and of a complete 16-run grid",
        **machine(),
        "repeats": args.repeats,
        "single_run": single,
        "grid_16_runs": grid,
        "grid_over_single_cpu": round(grid["cpu_s"] / single["cpu_s"], 2),
        "goals": {"single_run_cpu_s": 3.0, "grid_over_single_cpu": 2.0},
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
