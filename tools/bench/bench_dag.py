"""DAG-building benchmark: what a dry run (``snakemake -n``) costs on a user's folder dataset.

Rule remap takes every file of a ``folder`` dataset as an input, so that an edit below the root
reruns it; this measures what that costs Snakemake on the Oxford-IIIT Pet size (7,349 image/mask
pairs, 14,698 files plus two split lists) against a small dataset of the same layout. Each dry
run is a fresh process on a fresh working directory (every job planned), repeated; the JSON
holds the median wall time and CPU time (user + system of the process and its children).
File contents do not matter to Snakemake here, so the pairs are one tiny PNG copied.

    python tools/bench/bench_dag.py --out tools/bench/results/dag-cpu-2cores.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from record import machine, timed_snakemake, write_result

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = ["Snakefile", "rules", "scripts", "config", "envs", "profiles"]


def make_folder_dataset(root: Path, pairs: int) -> None:
    """``pairs`` image/mask pairs in the Oxford layout, with split lists (a quarter is test)."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "template.jpg")
    Image.new("L", (8, 8), 1).save(root / "template.png")
    names = [f"Breed_{i}" for i in range(pairs)]
    for name in names:
        os.link(root / "template.jpg", root / "images" / f"{name}.jpg")
        os.link(root / "template.png", root / "annotations" / "trimaps" / f"{name}.png")
    (root / "template.jpg").unlink()
    (root / "template.png").unlink()
    test = set(names[::4])
    for list_name, ids in (("test", sorted(test)), ("trainval", sorted(set(names) - test))):
        lines = "".join(f"{i} 1 1 1\n" for i in ids)
        (root / "annotations" / f"{list_name}.txt").write_text(lines)


def dry_run(pairs: int, repeats: int) -> dict:
    """Median wall and CPU seconds of ``snakemake -n`` on a folder dataset of ``pairs`` pairs."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in WORKFLOW:
            src = REPO / name
            copy = shutil.copytree if src.is_dir() else shutil.copy2
            copy(src, work / name)
        make_folder_dataset(work / "data", pairs)
        cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
        cfg["dataset"] = {"source": "folder", "root": "data", "layout": "oxford", "name": "bench"}
        (work / "config" / "bench.yaml").write_text(yaml.safe_dump(cfg))
        walls, cpus = [], []
        for _ in range(repeats):
            args = ("-n", "--quiet", "rules", "--configfile", "config/bench.yaml")
            wall, cpu, proc = timed_snakemake(work, *args)
            if proc.returncode != 0 or "remap" not in proc.stdout + proc.stderr:
                raise RuntimeError(f"dry run failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            walls.append(wall)
            cpus.append(cpu)
    return {
        "pairs": pairs,
        "files": 2 * pairs + 2,
        "wall_s": round(statistics.median(walls), 3),
        "cpu_s": round(statistics.median(cpus), 3),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--pairs", type=int, nargs="+", default=[48, 7349])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [dry_run(n, args.repeats) for n in args.pairs]
    result = {
        "benchmark": "snakemake -n on a folder dataset (every job planned)",
        **machine(),
        "runs": runs,
        "extra_cpu_s_per_1000_pairs": (
            round(
                1000
                * (runs[-1]["cpu_s"] - runs[0]["cpu_s"])
                / (runs[-1]["pairs"] - runs[0]["pairs"]),
                3,
            )
            if len(runs) > 1
            else None
        ),
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
