"""Peak memory of checking one huge image/mask pair, as ``segpipe verify`` and the remap step do.

Writes a folder dataset holding one SIZE x SIZE RGB PNG and its two-value greyscale mask, then
runs :func:`segpipe.data.verify.verify_dataset` on it in a fresh process and records that process's
peak resident memory (``ru_maxrss``) and the wall time, as JSON:

    python tools/bench/bench_verify_memory.py --size 9000 \\
        --out tools/bench/results/verify-memory-cpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PROBE = """
import resource, sys, time
from segpipe.data.verify import verify_dataset
start = time.perf_counter()
summary = verify_dataset(sys.argv[1], table={0: 0, 255: 1})
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak_kib, seconds, summary["pairs_usable"], len(summary["problems"]))
"""


def write_pair(root: Path, size: int) -> None:
    """One SIZE x SIZE RGB image (a gradient, quick to compress) and its {0, 255} mask."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ramp = (np.arange(size, dtype=np.uint32) % 256).astype(np.uint8)
    rgb = np.empty((size, size, 3), dtype=np.uint8)
    rgb[..., 0] = ramp[None, :]
    rgb[..., 1] = ramp[:, None]
    rgb[..., 2] = 128
    Image.fromarray(rgb).save(root / "images" / "huge.png", compress_level=1)
    del rgb
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[: size // 2] = 255
    Image.fromarray(mask).save(root / "masks" / "huge.png", compress_level=1)


def measure(size: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        write_pair(Path(tmp), size)
        out = subprocess.run(
            [sys.executable, "-c", PROBE, tmp], check=True, capture_output=True, text=True
        ).stdout.split()
    peak_kib, seconds, usable, problems = int(out[0]), float(out[1]), int(out[2]), int(out[3])
    return {
        "size": f"{size}x{size}",
        "peak_rss_mb": round(peak_kib / 1024),
        "seconds": round(seconds, 1),
        "pairs_usable": usable,
        "problems": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs="+", default=[9000])
    parser.add_argument("--label", default="", help="what was measured (e.g. the code's state)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [measure(size) for size in args.size]
    record = {
        "benchmark": "verify one huge pair: peak resident memory of the checking process",
        "label": args.label,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "python": platform.python_version(),
        "results": rows,
    }
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
