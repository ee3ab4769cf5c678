"""Successive halving and Hyperband brackets against the full grid over the same candidates, on
three datasets: the ISBI 2012 membranes, CamVid road scenes and the synthetic Oxford-layout
pets (issue #35 item 3).

Per dataset, in a fresh export of ``--rev`` (`git archive`; its own package first on
PYTHONPATH) under ``--work``, with ``snakemake --cores 2`` and one thread per job:

- ``grid``: 9 candidates (3 learning rates x 3 losses or encoders) trained in full, every one
  predicted and evaluated on val and test; the winner by validation mIoU (the leaderboard);
- ``search``: the same candidates searched with two brackets (``search.brackets: 2``) over the
  rung budgets 2 -> 4 -> 8 -> 16 -> 27 at eta 2, the winner predicted and evaluated on test.

Bracket b of the search is exactly the plain successive-halving search whose first rung is the
ladder's b-th budget (same budgets, same learning-rate schedule, the same training), so the
search's bracket 0 is plain successive halving from a short first budget (2 epochs) and its
bracket 1 plain successive halving from 4 epochs; each is scored on its own (its own epochs, its
own winner) beside the brackets together. ``analyze`` checks that every rung score of the search
equals the grid's history at that budget (rungs bit for bit as straight runs), then reports per
search: epochs as a fraction of the grid's, whether the winner is the grid's, the regret (grid
winner's test mIoU minus the search winner's, with the paired bootstrap interval over the test
images of that difference, from every test image's confusion matrix; beside it the per-image
difference of segpipe.reporting.comparison.paired_difference), and per rung the Spearman
correlation (scipy.stats) between the candidates' scores at the rung's budget and the grid's
final ranking; and, replaying the grid's histories, how the searches decide when promotion reads
a rung's last epoch, its best epoch or a smoothed score.

    PYTHONPATH=src nice -n 10 python tools/bench/bench_search.py --data ../shared/data

``--tiny`` validates the whole benchmark in minutes (32 px, a tiny UNet, a few images, rungs of
1 -> 2 -> 4 -> 9 epochs) and writes its JSON under the work folder instead of tools/bench/results/.
Phases can run apart (``--phase grid`` now, ``--phase search`` later): each keeps its folder
under ``--work`` and Snakemake resumes what a killed phase left.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from record import BIN, export, machine, write_result

from segpipe.data.masks import load_mask
from segpipe.data.predictions import split_dir
from segpipe.data.split import read_manifest
from segpipe.evaluation.evaluate import load_prediction
from segpipe.evaluation.metrics import confusion_matrix, summarize
from segpipe.workflow.config import load_config_file, load_schema, validate_config

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "tools" / "bench" / "results"
DATASETS = ("membrane", "camvid", "synthetic")
COMMAND = "snakemake --configfile config/bench.yaml --cores 2"
RULES = ["download", "remap", "split", "preprocess", "train", "predict", "evaluate", "report"]
# The search: rungs of 2 -> 4 -> 8 -> 16 -> 27 epochs at eta 2 (half the candidates go on at
# each rung, so the last cut is made late), two brackets (first budgets 2 and 4).
SEARCH = {"min_epochs": 2, "max_epochs": 27, "eta": 2, "brackets": 2}
TINY_SEARCH = {"min_epochs": 1, "max_epochs": 9, "eta": 2, "brackets": 2}
LRS = [0.01, 0.003, 0.001]
LOSSES = ["ce", "ce+dice", "dice"]
CAMVID_PAIRS, CAMVID_SEED = 160, 0  # a seeded sample of CamVid's 367 training scenes
GOAL_RATIO = 0.5  # brackets: at most half the grid's epochs


def merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged into it, nested sections merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merged(base[key], value) if both else value
    return out


def example(name: str, *drop: str) -> dict:
    cfg = yaml.safe_load((REPO / name).read_text())
    return {key: value for key, value in cfg.items() if key not in drop}


def camvid_subset(data: Path, dest: Path, pairs: int) -> Path:
    """A folder of links to a seeded sample of CamVid's training pairs (read in place)."""
    names = sorted(p.name for p in (data / "camvid" / "train").glob("*.png"))
    chosen = sorted(random.Random(CAMVID_SEED).sample(names, pairs))
    for folder in ("train", "trainannot"):
        (dest / folder).mkdir(parents=True, exist_ok=True)
        for name in chosen:
            link = dest / folder / name
            if not link.is_symlink():
                link.symlink_to(data / "camvid" / folder / name)
    return dest


def dataset_config(name: str, data: Path, work: Path, tiny: bool, seed: int = 0) -> dict:
    """The base config of dataset ``name`` with its grid of 9 candidates, at benchmark scale,
    trained with ``train.seed: seed``."""
    if name == "membrane":
        base = example("config/examples/search_membrane.yaml", "search", "grid")
        extra = {
            "dataset": {"root": str(data / "isbi2012_membrane" / "train")},
            "grid": {"train.lr": LRS, "train.loss": LOSSES},
            "train": {"image_size": 96},
        }
    elif name == "camvid":
        base = example("config/examples/compare_camvid_scale.yaml", "experiments", "compare")
        pairs = 24 if tiny else CAMVID_PAIRS
        root = camvid_subset(data, work / f"camvid-{pairs}", pairs)
        encoders = ["tu-resnet10t", "tu-resnet18", "tu-mobilenetv3_large_100"]
        extra = {
            "dataset": {"root": str(root)},
            "grid": {"train.lr": LRS, "train.encoder": encoders},
            "train": {"encoder_depth": 3, "decoder_channels": [32, 16, 8], "image_size": 64},
        }
    else:
        base = example("config/demo.yaml", "grid")
        images = 24 if tiny else 160
        extra = {
            "dataset": {"synthetic": {"n_images": images}},
            "grid": {"train.lr": LRS, "train.loss": LOSSES},
            "train": {
                "encoder": "tu-resnet10t",
                "encoder_depth": 3,
                "decoder_channels": [32, 16, 8],
                "scheduler": "cosine",
                "image_size": 64,
            },
        }
    search = TINY_SEARCH if tiny else SEARCH
    common = {
        "run_name": f"search-bench-{name}",
        "train": {
            "epochs": search["max_epochs"],
            "warmup_epochs": 0.5,
            "batch_size": 8 if name != "membrane" else 4,
            "device": "cpu",
            "num_workers": 0,
            "seed": seed,
        },
        "report": {"title": f"search benchmark: {name}", "gallery_size": 1},
        "resources": {rule: {"threads": 1, "mem_mb": 2000, "runtime": 60} for rule in RULES},
    }
    cfg = merged(merged(base, extra), common)
    if tiny:
        cfg["train"] = {**cfg["train"], "decoder_channels": [16, 8, 4], "image_size": 32}
        if name == "membrane":
            cfg["train"]["encoder"] = "tu-resnet10t"
    return cfg


def snakemake(work: Path, *targets: str, timeout: int) -> float:
    """Run the exported workflow towards ``targets`` in ``work``; wall seconds."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(work / "src"),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [str(BIN / "snakemake"), "--configfile", "config/bench.yaml", "--cores", "2"]
    start = time.perf_counter()
    with open(work / "bench-snakemake.log", "a") as log:
        proc = subprocess.run(
            [*cmd, *targets], cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env,
            timeout=timeout,
        )  # fmt: skip
    if proc.returncode != 0:
        tail = (work / "bench-snakemake.log").read_text()[-6000:]
        sys.exit(f"snakemake {' '.join(targets)} failed in {work}:\n{tail}")
    return time.perf_counter() - start


def prepared(folder: Path, rev: str, cfg: dict) -> tuple[Path, str]:
    """``folder`` holding the export of ``rev`` (kept when there: a rerun resumes) and the
    config; the exported commit."""
    stamp = folder / "bench-commit.txt"
    if not stamp.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(export(rev, folder))
    (folder / "config" / "bench.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder, stamp.read_text().strip()


def evaluation(work: Path, run: str) -> dict:
    """A run's val and test mIoU (metrics.json), its per-image test mIoU and its per-image
    test confusion matrices (flattened, C x C counts: the paired bootstrap of the
    dataset-level test mIoU resamples them)."""
    evaluate = work / "results" / "runs" / run / "evaluate"
    miou = {
        split: json.loads((evaluate / split / "metrics.json").read_text())["mean_iou"]
        for split in ("val", "test")
    }
    per_image = pd.read_csv(evaluate / "test" / "per_image.csv", dtype={"id": str})
    matrices = test_confusion(work, run)
    pooled = summarize(np.sum(list(matrices.values()), axis=0))
    if not np.isclose(pooled["mean_iou"], miou["test"], rtol=0, atol=1e-12):
        sys.exit(
            f"{run}: its test images' confusion matrices give mIoU {pooled['mean_iou']}, "
            f"metrics.json {miou['test']}"
        )
    return {
        "val_miou": miou["val"],
        "test_miou": miou["test"],
        "test_per_image": dict(zip(per_image["id"], per_image["mean_iou"], strict=True)),
        "test_confusion": {name: m.reshape(-1).tolist() for name, m in matrices.items()},
    }


def test_confusion(work: Path, run: str) -> dict[str, np.ndarray]:
    """Per test image, the confusion matrix of rule evaluate's inputs (the split's manifest and
    the run's predicted masks), scored as rule evaluate scores it."""
    folder = work / "config"
    cfg = validate_config(
        load_config_file(folder / "bench.yaml"), load_schema(folder / "schema.yaml"),
        check_models=False,
    )  # fmt: skip
    manifest = read_manifest(next((work / "results" / "split").glob("*/test.csv")))
    predicted = split_dir(work / "results" / "runs" / run / "predict", "test")
    out = {}
    for row in manifest.to_dict("records"):
        truth = load_mask(work / row["mask"])
        pred = load_prediction(predicted, row, truth.shape)
        out[row["id"]] = confusion_matrix(pred, truth, len(cfg["classes"]), cfg["ignore_index"])
    return out


def job_seconds(work: Path, rule: str) -> dict:
    """Wall and CPU seconds of every job of ``rule`` (Snakemake's benchmark files), summed: what
    the training cost, however many snakemake calls it took."""
    tables = [pd.read_csv(p, sep="\t") for p in (work / "benchmarks" / rule).rglob("*.tsv")]
    return {
        "jobs": len(tables),
        "wall_s": round(sum(float(t["s"].iloc[-1]) for t in tables), 1),
        "cpu_s": round(sum(float(t["cpu_time"].iloc[-1]) for t in tables), 1),
    }


def run_grid(folder: Path, rev: str, cfg: dict, timeout: int) -> dict:
    """Every candidate trained for max_epochs and evaluated; the leaderboard's winner."""
    work, commit = prepared(folder, rev, cfg)
    wall = snakemake(work, "results/compare/leaderboard.csv", timeout=timeout)
    board = pd.read_csv(work / "results" / "compare" / "leaderboard.csv")
    ranked = board.sort_values("val_miou", ascending=False, kind="stable")
    runs = {}
    for run in board["run"]:
        history = pd.read_csv(work / "results" / "runs" / run / "train" / "history.csv")
        runs[run] = {
            "history_val_miou": history["val_miou"].tolist(),
            **evaluation(work, run),
        }
    return {
        "commit": commit[:12],
        "winner": ranked["run"].iloc[0],
        "epochs": int(len(board) * cfg["train"]["epochs"]),
        "candidates": len(board),
        "runs": runs,
        "training": job_seconds(work, "train"),
        "split": {
            split: len(pd.read_csv(next((work / "results" / "split").glob(f"*/{split}.csv"))))
            for split in ("train", "val", "test")
        },
        "wall_s": round(wall, 1),
    }


def run_search(folder: Path, rev: str, cfg: dict, search: dict, timeout: int) -> dict:
    """The bracket search: its rung files, the selection, the winner's evaluation."""
    work, commit = prepared(folder, rev, {**cfg, "search": search})
    wall = snakemake(work, "results/search/winner.csv", timeout=timeout)
    results = work / "results" / "search"
    rungs = pd.concat(
        [
            pd.read_csv(p, dtype={"candidate": str})
            for p in sorted(results.glob("bracket*/rung*.csv"))
        ]
    )
    selection = pd.read_csv(results / "winner.csv", dtype={"candidate": str})
    (winner,) = selection.loc[selection["winner"] == "yes", "candidate"]
    targets = [
        f"results/runs/{winner}/evaluate/{split}/{name}"
        for split in ("val", "test")
        for name in ("metrics.json", "per_image.csv")
    ]
    wall += snakemake(work, *targets, "results/search/report.html", timeout=timeout)
    return {
        "commit": commit[:12],
        "winner": winner,
        "rungs": rungs.to_dict("records"),
        "selection": selection.to_dict("records"),
        "winner_evaluation": evaluation(work, winner),
        "training": job_seconds(work, "search_train"),
        "wall_s": round(wall, 1),
    }


def phase_record(out: Path) -> dict:
    """What earlier phases recorded of a dataset (a record of this benchmark's format only)."""
    record = json.loads(out.read_text()) if out.is_file() else {}
    return record if "dataset" in record else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="commit to measure (default HEAD)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=REPO.parent / "bench-search")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--phase", choices=("grid", "search", "analyze", "all"), default="all")
    parser.add_argument("--tiny", action="store_true", help="validate at a tiny scale")
    parser.add_argument("--timeout", type=int, default=4 * 3600, help="seconds per snakemake")
    parser.add_argument(
        "--seed", type=int, default=0,
        help="train.seed of every candidate; a seed other than 0 trains the grid again and "
        "replays the searches from its histories (seed 0's search checks the replay)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.seed:
        seed_replays(args)
        return
    data, work = args.data.resolve(), args.work.resolve() / ("tiny" if args.tiny else "full")
    search = TINY_SEARCH if args.tiny else SEARCH
    for name in args.datasets:
        out = (work if args.tiny else RESULTS) / f"search-{name}-cpu-2cores.json"
        record = phase_record(out)
        cfg = dataset_config(name, data, work, args.tiny)
        if args.phase in ("grid", "all"):
            record["grid"] = run_grid(work / f"{name}-grid", args.rev, cfg, args.timeout)
            print(f"{name} grid: winner {record['grid']['winner']}", flush=True)
        if args.phase in ("search", "all"):
            folder = work / f"{name}-search"
            record["search"] = run_search(folder, args.rev, cfg, search, args.timeout)
            print(f"{name} search: winner {record['search']['winner']}", flush=True)
        record.update(
            {
                **machine(),
                "dataset": name,
                "command": COMMAND,
                "config": {k: v for k, v in cfg.items() if k not in ("resources", "report")},
                "search_budget": search,
                "scale": scale(name, cfg, record),
            }
        )
        if "grid" in record and "search" in record:
            from search_analysis import analyze

            record["analysis"] = analyze(record, goal_ratio=GOAL_RATIO)
        write_result(out, record)
    write_summary(work if args.tiny else RESULTS)


def seed_replays(args: argparse.Namespace) -> None:
    """``--seed N``: per dataset the grid trained with ``train.seed: N`` and the searches
    replayed from its histories, in ``search-<dataset>-seed<N>-cpu-2cores.json``; the
    candidates' declared order and the search's budget are seed 0's record's."""
    from search_analysis import analyze

    data, work = args.data.resolve(), args.work.resolve() / "full"
    for name in args.datasets:
        base = phase_record(RESULTS / f"search-{name}-cpu-2cores.json")
        cfg = dataset_config(name, data, work, False, args.seed)
        grid = run_grid(work / f"{name}-grid-seed{args.seed}", args.rev, cfg, args.timeout)
        print(f"{name} grid, seed {args.seed}: winner {grid['winner']}", flush=True)
        record = {
            **machine(),
            "dataset": name,
            "seed": args.seed,
            "command": COMMAND,
            "search_budget": base["search_budget"],
            "grid": grid,
            # rung 0 of bracket 0 lists every candidate in declared order, as analyze reads it
            "search": {"rungs": [r for r in base["search"]["rungs"] if r["rung"] == 0]},
        }
        record["analysis"] = analyze(record, goal_ratio=GOAL_RATIO, replay_only=True)
        write_result(RESULTS / f"search-{name}-seed{args.seed}-cpu-2cores.json", record)
    write_summary(RESULTS)


def write_summary(folder: Path) -> None:
    """search-summary-cpu-2cores.json across the datasets, once each has its analysis."""
    records = {name: phase_record(folder / f"search-{name}-cpu-2cores.json") for name in DATASETS}
    if all("analysis" in record for record in records.values()):
        from search_analysis import seed_summary, summary

        seeds: dict[int, dict] = {}
        for path in sorted(folder.glob("search-*-seed*-cpu-2cores.json")):
            record = json.loads(path.read_text())
            seeds.setdefault(record["seed"], {})[record["dataset"]] = record
        others = [record for datasets in seeds.values() for record in datasets.values()]
        write_result(
            folder / "search-summary-cpu-2cores.json",
            {**machine(), **summary(records, others), "seeds": seed_summary(seeds)},
        )


def scale(name: str, cfg: dict, record: dict) -> dict:
    """What the benchmark's numbers were measured at."""
    train = cfg["train"]
    encoders = cfg["grid"].get("train.encoder") or [train["encoder"]]
    test_images = (
        len(next(iter(record["grid"]["runs"].values()))["test_per_image"])
        if "grid" in record
        else None
    )
    return {
        "image_size": train["image_size"],
        "model": f"{train['arch']} {' / '.join(encoders)} depth {train['encoder_depth']}, "
        f"decoder {train['decoder_channels']}",
        "batch_size": train["batch_size"],
        "threads_per_job": 1,
        "source": cfg["dataset"].get("root") or "synthetic",
        "test_images": test_images,
        "camvid_pairs": CAMVID_PAIRS if name == "camvid" else None,
    }


if __name__ == "__main__":
    main()
