"""Planned configs against hand-written ones (issue #33 item 4), and how long planning takes.

In a fresh export of ``--rev`` (`git archive`; its own package first on PYTHONPATH) beside the
repository, for each dataset:

- ``isbi``: the ISBI 2012 membranes (../shared/data), against config/examples/membrane_mini_unet.yaml;
- ``camvid``: CamVid's 367 training scenes, against config/examples/compare_camvid_scale.yaml's
  base run (squashed; its experiments left out);
- ``oxford-synthetic``: the synthetic Oxford-layout data of config/demo.yaml (160 images), made
  into a folder, against config/demo.yaml's settings (its grid left out) pointed at that folder.

``segpipe plan`` plans each dataset for this machine's CPU with ``--max-size`` the hand-written
config's input size at this scale; then both configs train for the same epochs (``EPOCHS``, one
overlay file on top of each: epochs, CPU, one job at a time) with ``snakemake --cores 2`` to their
scores. Recorded: both configs' key options, validation and test mIoU side by side, the paired
bootstrap 95% interval of the per-image test mIoU difference (planned minus hand-written, over
the same test images: both split with seed 42 and the same test share or list), each train job's
peak memory against what its config asked for, and wall times. A planned run with folds is scored
as the pipeline scores it: the mean of its folds' validation mIoU, and its fold ensemble on test.

Planning time: ``segpipe plan --sample 500`` on 2,048 synthetic Oxford-layout pairs made in a
temporary folder (and on all of them), wall seconds of the command and of its fingerprint step.

    nice -n 10 .venv/bin/python tools/bench/bench_plan.py
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml
from record import BIN, export, machine, write_result

from segpipe.data.synthetic import make_oxford_like
from segpipe.reporting.comparison import paired_difference

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tools" / "bench" / "results" / "plan-cpu-2cores.json"
SHARED = Path(os.environ.get("SEGPIPE_SHARED_DATA", REPO.parent / "shared" / "data"))
CAMVID = [
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
]
# Per dataset: the hand-written example, its input size at this scale (the plan's --max-size),
# the epochs both configs train, what segpipe plan is told (what a user knows: class names, the
# void value, no canonical orientation for EM), and the example's overrides at this scale.
CASES = {
    "isbi": {
        "example": "config/examples/membrane_mini_unet.yaml",
        "size": 64,
        "epochs": 10,
        "plan": ["--images-dir", "image", "--masks-dir", "label", "--classes", "membrane,cell"]
        + ["--any-orientation", "--name", "ISBI 2012 EM membranes"],
    },
    "camvid": {
        "example": "config/examples/compare_camvid_scale.yaml",
        "size": 64,
        "epochs": 6,
        "plan": ["--images-dir", "train", "--masks-dir", "trainannot", "--ignore-value", "11"]
        + ["--classes", ",".join(CAMVID), "--name", "CamVid road scenes"],
    },
    "oxford-synthetic": {
        "example": "config/demo.yaml",
        "size": 64,
        "epochs": 10,
        "plan": ["--layout", "oxford", "--name", "synthetic Oxford-layout pets"],
    },
}
KEPT = ("encoder", "encoder_depth", "loss", "class_weights", "batch_size", "image_size", "resize")
KEPT += ("image_scale", "augment", "lr")


def environment(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(work / "src"),
        "HF_HUB_OFFLINE": "1",
    }


def command(work: Path, args: list[str], timeout: int) -> tuple[float, str]:
    """Run a command in ``work``; its wall seconds and output (it must succeed)."""
    start = time.perf_counter()
    proc = subprocess.run(
        args, cwd=work, capture_output=True, text=True, env=environment(work), timeout=timeout
    )
    if proc.returncode != 0:
        sys.exit(
            f"{' '.join(args[:3])} failed in {work}:\n{proc.stdout[-3000:]}{proc.stderr[-6000:]}"
        )
    return time.perf_counter() - start, proc.stdout + proc.stderr


def dataset(name: str, data: Path) -> tuple[Path, dict]:
    """The dataset's root and the hand-written config's dataset section pointing at it."""
    if name in ("isbi", "camvid"):  # the example's root, ../shared/data/..., is the repo's
        root = SHARED / ("isbi2012_membrane/train" if name == "isbi" else "camvid")
        return root, {"dataset_root": str(root)}
    root = data / "pets"
    if not root.is_dir():
        make_oxford_like(root, n_images=160, seed=0, min_size=64, max_size=112, test_fraction=0.25)
    section = {"source": "folder", "layout": "oxford", "root": str(root)}
    return root, {"dataset": {**section, "name": "synthetic Oxford-layout pets"}}


def hand_written(work: Path, case: dict, dataset_section: dict) -> dict:
    """The example as a single run at this scale (its experiments or grid left out)."""
    cfg = yaml.safe_load((work / case["example"]).read_text())
    for key in ("experiments", "grid", "compare"):
        cfg.pop(key, None)
    if "dataset_root" in dataset_section:
        cfg["dataset"]["root"] = dataset_section["dataset_root"]
    else:
        cfg.update(dataset_section)
    cfg["run_name"] = "hand-written"
    cfg["train"]["image_size"] = min(cfg["train"]["image_size"], case["size"])
    return cfg


def overlay(case: dict) -> dict:
    """What both configs get on top: the epochs, the CPU, one job at a time."""
    return {"train": {"epochs": case["epochs"], "device": "cpu", "num_workers": 0}}


def scores(work: Path, run: str, folds: int | None) -> tuple[dict, pd.DataFrame]:
    """Validation and test mIoU as the pipeline scores the run, and its per-image test scores."""
    results = work / "results" / "runs" / run
    if folds:
        summary = json.loads((results / "crossval" / "metrics.json").read_text())
        test = results / "ensemble" / "evaluate" / "test"
        val = summary["val"]["mean_iou"]["mean"]
    else:
        test = results / "evaluate" / "test"
        val = json.loads((results / "evaluate" / "val" / "metrics.json").read_text())["mean_iou"]
    miou = {"val": val, "test": json.loads((test / "metrics.json").read_text())["mean_iou"]}
    return miou, pd.read_csv(test / "per_image.csv", dtype={"id": str})


def train_memory(work: Path, run: str) -> list[float]:
    """The peak resident memory (MB) of each of the run's train jobs (Snakemake's benchmark)."""
    peaks = []
    for tsv in sorted((work / "benchmarks" / "train").rglob("*.tsv")):
        if str(tsv.relative_to(work / "benchmarks" / "train")).startswith(run):
            with tsv.open() as fh:
                value = next(csv.DictReader(fh, delimiter="\t"))["max_rss"]
            if value.replace(".", "", 1).isdigit():
                peaks.append(float(value))
    return peaks


def train(work: Path, cfg: dict, name: str, case: dict, timeout: int) -> dict:
    """Train ``cfg`` with the overlay to its scores; the result and per-image test scores."""
    (work / "config" / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (work / "config" / "bench-overlay.yaml").write_text(yaml.safe_dump(overlay(case)))
    files = ["--configfile", f"config/{name}.yaml", "config/bench-overlay.yaml"]
    wall, _ = command(work, [str(BIN / "snakemake"), *files, "--cores", "2"], timeout)
    miou, per_image = scores(work, cfg["run_name"], cfg["split"].get("folds"))
    train_cfg = cfg["train"]
    return {
        "config": {key: train_cfg.get(key) for key in KEPT if key in train_cfg},
        "split": {k: cfg["split"].get(k) for k in ("val_fraction", "test_fraction", "folds")},
        "val_miou": miou["val"],
        "test_miou": miou["test"],
        "train_mem_mb": cfg["resources"]["train"]["mem_mb"],
        "train_peak_rss_mb": train_memory(work, cfg["run_name"]),
        "wall_s": round(wall, 1),
        "per_image": per_image,
    }


def run_case(name: str, case: dict, rev: str, data: Path, timeout: int) -> dict:
    root, section = dataset(name, data)
    with tempfile.TemporaryDirectory(prefix=f"bench-plan-{name}-", dir=REPO.parent) as tmp:
        work = Path(tmp)
        commit = export(rev, work)
        plan_args = [str(BIN / "segpipe"), "plan", str(root), "-o", "config/planned.yaml"]
        plan_args += ["--device", "cpu", "--max-size", str(case["size"]), "--threads", "2"]
        plan_s, log = command(work, plan_args + case["plan"], timeout)
        planned = yaml.safe_load((work / "config" / "planned.yaml").read_text())
        runs = {
            "planned": train(work, planned, "planned", case, timeout),
            "hand_written": train(work, hand_written(work, case, section), "hand", case, timeout),
        }
        diff = paired_difference(runs["hand_written"]["per_image"], runs["planned"]["per_image"])
    for run in runs.values():
        del run["per_image"]
    return {
        "commit": commit[:12],
        "example": case["example"],
        "plan_command": "segpipe plan ROOT " + " ".join(plan_args[5:] + case["plan"]),
        "plan_s": round(plan_s, 1),
        "epochs": case["epochs"],
        "input_size": case["size"],
        **runs,
        "test_miou_difference": {
            "planned_minus_hand_written": diff.mean,
            "ci95": [diff.low, diff.high],
            "n_images": diff.n_images,
        },
    }


def planning_time(rev: str, timeout: int) -> dict:
    """``segpipe plan`` on 2,048 synthetic pairs: with --sample 500 and reading them all."""
    with tempfile.TemporaryDirectory(prefix="bench-plan-time-", dir=REPO.parent) as tmp:
        work = Path(tmp)
        export(rev, work)
        make_oxford_like(work / "pairs", n_images=2048, seed=3, min_size=64, max_size=112)
        out = {"pairs": 2048}
        for label, sample in (("sample_500", "500"), ("all", "0")):
            args = [str(BIN / "segpipe"), "plan", "pairs", "--layout", "oxford", "--sample", sample]
            args += ["--device", "cpu", "--max-size", "64", "--threads", "2", "--overwrite"]
            wall, log = command(work, args + ["-o", f"{label}.yaml"], timeout)
            found = re.search(r"fingerprint: done, (\d+) items in ([\d.]+) s", log)
            out[label] = {
                "wall_s": round(wall, 1),
                "pairs_read": int(found[1]) if found else None,
                "fingerprint_s": float(found[2]) if found else None,
            }
            shutil.rmtree(work / "results", ignore_errors=True)
        return out


def retime(rev: str, timeout: int) -> None:
    """The planning time measured again into OUT's record, with its own load average."""
    record = json.loads(OUT.read_text(encoding="utf-8"))
    load = round(os.getloadavg()[0], 2)
    timing = planning_time(rev, timeout)
    commit = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    record["planning_time"] = {**timing, "commit": commit[:12], "load_average_1min_before": load}
    record["goals"]["plan_2048_pairs_with_sample_under_60_s"] = timing["sample_500"]["wall_s"] < 60
    write_result(OUT, record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="commit to measure (default HEAD)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per command")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="measure only the planning time again (on a quieter machine) into the existing JSON",
    )
    args = parser.parse_args()
    if args.timing_only:
        retime(args.rev, args.timeout)
        return
    if not SHARED.is_dir():
        sys.exit(f"the shared datasets are not at {SHARED} (set SEGPIPE_SHARED_DATA)")
    load_before = round(os.getloadavg()[0], 2)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-plan-data-", dir=REPO.parent) as data:
        cases = {}
        for name in args.cases:
            cases[name] = run_case(name, CASES[name], args.rev, Path(data), args.timeout)
            print(f"{name}: {json.dumps(cases[name])}", flush=True)
    timing = planning_time(args.rev, args.timeout)
    better = sum(
        c["test_miou_difference"]["planned_minus_hand_written"] >= 0
        or (c["test_miou_difference"]["ci95"][1] or -1) >= 0
        for c in cases.values()
    )
    fits = all(
        max(c["planned"]["train_peak_rss_mb"] or [0]) <= c["planned"]["train_mem_mb"]
        for c in cases.values()
    )
    record = {
        **machine(),
        "command": "nice -n 10 python tools/bench/bench_plan.py",
        "load_average_1min_before": load_before,
        "scale": {
            "note": "CPU scale: the plan is asked for the hand-written config's input size at "
            "this scale (--max-size); both configs train the same epochs; one job at a time",
            **{name: {"input_size": c["size"], "epochs": c["epochs"]} for name, c in CASES.items()},
        },
        "cases": cases,
        "planning_time": timing,
        "goals": {
            "planned_at_least_as_good_or_inside_the_interval": f"{better} of {len(cases)}",
            "met": better >= 2,
            "planned_train_jobs_within_their_memory": fits,
            "plan_2048_pairs_with_sample_under_60_s": timing["sample_500"]["wall_s"] < 60,
        },
        "wall_s": round(time.perf_counter() - start, 1),
    }
    write_result(OUT, record)


if __name__ == "__main__":
    main()
