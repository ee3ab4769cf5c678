"""CPU time and memory of the evaluate step at demo scale, before and after it dropped torch.

Demo-scale inputs (config/demo.yaml: 160 synthetic images of 64-112 px, 3 classes, a quarter
for test, 15 % of the rest for val): ``--test-images`` and ``--val-images`` random truth masks
of those sizes, each with a prediction that differs in about a tenth of its pixels. Each split is
scored by segpipe.evaluation.evaluate.evaluate_split, as the evaluate rule calls it, in a fresh
interpreter; a wrapper process reports that child's CPU seconds (user + system) and max RSS
from ``resource.getrusage(RUSAGE_CHILDREN)``, so each figure is one job's. The code "before" is
a checkout of the package from before the change (``--before-src``, its ``src`` folder); the
best of ``--repeats`` runs is kept. A predict job imports at least segpipe.inference.predict_splits
(torch, smp): the cost of that import alone is recorded as a lower bound for one predict job.

    git worktree add /tmp/before <commit> && \\
    python tools/bench/bench_lean_jobs.py --before-src /tmp/before/src \\
        --out tools/bench/results/lean-jobs-cpu-2cores.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from record import machine, write_result

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["pet", "background", "border"]
GOALS = {"evaluate_cpu_s": 1.0, "evaluate_max_rss_mb": 200}

# Runs ``sys.argv[1:]`` as a child and prints its CPU seconds and max RSS (MB, Linux: KiB).
WRAPPER = """
import json, resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024}))
"""

EVALUATE = """
import json, sys
from segpipe.evaluation.evaluate import evaluate_split
out, split, classes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
evaluate_split(
    f"{out}/{split}.csv", f"{out}/{split}", metrics_json=f"{out}/{split}/metrics.json",
    per_class_csv=f"{out}/{split}/per_class.csv", confusion_csv=f"{out}/{split}/confusion.csv",
    confusion_normalized_csv=f"{out}/{split}/confusion_normalized.csv",
    confusion_counts_csv=f"{out}/{split}/confusion_counts.csv",
    per_image_csv=f"{out}/{split}/per_image.csv", classes=classes, ignore_index=255,
    foreground_classes=[0, 2], split=split,
)
"""

PREDICT_IMPORTS = "import segpipe.inference.predict_splits"


def write_split(folder: Path, split: str, count: int, rng: np.random.Generator) -> None:
    """``count`` truth masks and predictions of demo sizes, and the split's manifest."""
    lines = ["id,image,mask,group,height,width"]
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    (folder / split / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        height, width = rng.integers(64, 113, size=2)
        truth = rng.integers(0, len(CLASSES), size=(height, width), dtype=np.uint8)
        wrong = rng.random(truth.shape) < 0.1
        pred = np.where(wrong, rng.integers(0, len(CLASSES), size=truth.shape), truth)
        image_id = f"{split}-{i:03d}"
        mask = folder / "masks" / f"{image_id}.png"
        Image.fromarray(truth).save(mask)
        Image.fromarray(pred.astype(np.uint8)).save(folder / split / "masks" / f"{image_id}.png")
        lines.append(f"{image_id},x.png,{mask},g,{height},{width}")
    (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def measure(src: Path, code: str, *args: str, repeats: int) -> dict[str, float]:
    """The best CPU seconds and its run's max RSS of ``code`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    runs = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", WRAPPER, sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        runs.append(json.loads(proc.stdout.splitlines()[-1]))
    best = min(runs, key=lambda run: run["cpu_s"])
    return {key: round(value, 2) for key, value in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before-src", type=Path, required=True)
    parser.add_argument("--test-images", type=int, default=40)
    parser.add_argument("--val-images", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    counts = {"test": args.test_images, "val": args.val_images}
    sources = {"before": args.before_src.resolve(), "after": REPO / "src"}
    result: dict = {"benchmark": "evaluate step at demo scale", **machine()}
    result |= {"images": counts, "image_sizes": "64-112 px", "classes": len(CLASSES)}
    result["load_average_1min_before"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for split, count in counts.items():
            write_split(Path(tmp), split, count, rng)
        for name, src in sources.items():
            result[name] = {
                split: measure(src, EVALUATE, tmp, split, json.dumps(CLASSES), repeats=args.repeats)
                for split in counts
            }
    result["predict_imports"] = measure(sources["after"], PREDICT_IMPORTS, repeats=args.repeats)
    result["goals"] = GOALS
    write_result(args.out, result)


if __name__ == "__main__":
    main()
