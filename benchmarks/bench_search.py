"""A successive-halving search against the full grid over the same candidates, on the ISBI 2012
membrane stack (config/examples/search_membrane.yaml, issue #26 item 6).

In a fresh export of ``--rev`` (`git archive`; its own package first on PYTHONPATH) beside the
repository, with ``snakemake --cores 2``:

- ``search``: the example as shipped (9 candidates, rungs of 2, 6 and 18 epochs at eta 3): the
  winner (the promoted row of the last rung file), the epochs trained in all (each candidate's
  budget in the last rung it reached) and the winner's val and test mIoU;
- ``grid``: the same config without its ``search`` section, i.e. 9 runs of max_epochs each,
  selected by validation mIoU (results/compare/leaderboard.csv).

The verdict: the search passes when its winner is the grid's, or the paired bootstrap 95%
interval of the per-image test mIoU difference (grid winner minus search winner) contains 0, at
no more than 40% of the grid's epochs. The benchmark's scale (image size, threads) is in
``overrides`` of the JSON:

    PYTHONPATH=src python benchmarks/bench_search.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from record import BIN, export, machine, write_result

from segpipe.reporting.comparison import paired_difference

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "search-membrane-cpu-2cores.json"
EXAMPLE = "config/examples/search_membrane.yaml"
RULES = ["download", "remap", "split", "preprocess", "train", "predict", "evaluate", "report"]
# CPU scale on 2 shared cores: smaller images, one thread per job so two jobs run side by side.
OVERRIDES = {
    "train": {"image_size": 96, "device": "cpu", "num_workers": 0},
    "resources": {rule: {"threads": 1, "mem_mb": 2000, "runtime": 60} for rule in RULES},
}
MAX_RATIO = 0.4


def merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra``'s sections merged one level deep."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def snakemake(work: Path, *targets: str, timeout: int) -> float:
    """Run the workflow's config towards ``targets`` in ``work``; wall seconds."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(work / "src"),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [str(BIN / "snakemake"), "--configfile", "config/bench.yaml", "--cores", "2"]
    start = time.perf_counter()
    proc = subprocess.run(
        [*cmd, *targets], cwd=work, capture_output=True, text=True, env=env, timeout=timeout
    )
    if proc.returncode != 0:
        sys.exit(f"snakemake {' '.join(targets)} failed in {work}:\n{proc.stderr[-6000:]}")
    return time.perf_counter() - start


def scores(work: Path, run: str) -> tuple[dict, pd.DataFrame]:
    """A run's val and test mIoU and its per-image test scores."""
    evaluate = work / "results" / "runs" / run / "evaluate"
    miou = {
        split: json.loads((evaluate / split / "metrics.json").read_text())["mean_iou"]
        for split in ("val", "test")
    }
    return miou, pd.read_csv(evaluate / "test" / "per_image.csv", dtype={"id": str})


def run_targets(run: str) -> list[str]:
    return [
        f"results/runs/{run}/evaluate/{split}/{name}"
        for split in ("val", "test")
        for name in ("metrics.json", "per_image.csv")
    ]


def run_search(work: Path, cfg: dict, timeout: int) -> tuple[dict, pd.DataFrame]:
    """The search: its rungs, winner, epochs and the winner's scores."""
    (work / "config" / "bench.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    search = cfg["search"]
    from segpipe.workflow.search import rung_budgets

    last = len(rung_budgets(search["min_epochs"], search["max_epochs"], search["eta"])) - 1
    wall = snakemake(work, f"results/search/rung{last}.csv", timeout=timeout)
    rungs = [pd.read_csv(work / "results" / "search" / f"rung{r}.csv") for r in range(last + 1)]
    reached = pd.concat(rungs).groupby("candidate")["epochs"].max()
    final = rungs[-1]
    (winner,) = final.loc[final["promoted"] == "yes", "candidate"]
    wall += snakemake(work, *run_targets(winner), timeout=timeout)
    miou, per_image = scores(work, winner)
    result = {
        "winner": winner,
        "epochs": int(reached.sum()),
        "rungs": [len(r) for r in rungs],
        "val_miou": miou["val"],
        "test_miou": miou["test"],
        "wall_s": round(wall, 1),
    }
    return result, per_image


def run_grid(work: Path, cfg: dict, timeout: int) -> tuple[dict, pd.DataFrame]:
    """The full grid: every candidate for max_epochs, the winner by validation mIoU."""
    grid = {key: value for key, value in cfg.items() if key != "search"}
    grid["train"] = {**grid["train"], "epochs": cfg["search"]["max_epochs"]}
    (work / "config" / "bench.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    wall = snakemake(work, "results/compare/leaderboard.csv", timeout=timeout)
    board = pd.read_csv(work / "results" / "compare" / "leaderboard.csv")
    winner = board.sort_values("val_miou", ascending=False, kind="stable")["run"].iloc[0]
    wall += snakemake(work, *run_targets(winner), timeout=timeout)
    miou, per_image = scores(work, winner)
    result = {
        "winner": winner,
        "epochs": int(len(board) * grid["train"]["epochs"]),
        "candidates": len(board),
        "val_miou": miou["val"],
        "test_miou": miou["test"],
        "leaderboard": board[["run", "val_miou"]].to_dict("records"),
        "wall_s": round(wall, 1),
    }
    return result, per_image


def verdict(search: dict, grid: dict, search_images, grid_images) -> dict:
    """Same winner, or 0 inside the paired interval of grid minus search; epochs within 40%."""
    diff = paired_difference(search_images, grid_images)
    ratio = search["epochs"] / grid["epochs"]
    same = search["winner"] == grid["winner"]
    inside = diff.low is not None and diff.low <= 0 <= diff.high
    return {
        "same_winner": same,
        "test_miou_difference": {
            "grid_minus_search": diff.mean,
            "ci95": [diff.low, diff.high],
            "n_images": diff.n_images,
        },
        "epochs_ratio": round(ratio, 4),
        "passes": bool((same or inside) and ratio <= MAX_RATIO),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="commit to measure (default HEAD)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per snakemake call")
    args = parser.parse_args()
    cfg = merged(yaml.safe_load((REPO / EXAMPLE).read_text()), OVERRIDES)
    cases = {}
    for name, runner in (("search", run_search), ("grid", run_grid)):
        with tempfile.TemporaryDirectory(prefix=f"bench-search-{name}-", dir=REPO.parent) as tmp:
            commit = export(args.rev, Path(tmp))
            cases[name] = runner(Path(tmp), cfg, args.timeout)
            print(f"{name}: {cases[name][0]}", flush=True)
    record = {
        **machine(),
        "commit": commit[:12],
        "config": EXAMPLE,
        "command": "snakemake --configfile config/bench.yaml --cores 2",
        "overrides": OVERRIDES,
        "search_budget": cfg["search"],
        "search": cases["search"][0],
        "grid": cases["grid"][0],
        "verdict": verdict(
            cases["search"][0], cases["grid"][0], cases["search"][1], cases["grid"][1]
        ),
    }
    write_result(OUT, record)


if __name__ == "__main__":
    main()
