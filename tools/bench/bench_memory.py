"""Memory benchmark: does training's memory grow with the dataset beyond the memory-mapped arrays?

Each measurement runs one whole training epoch (segpipe.training.train.train_model: loader, augmentation,
steps, validation, checkpoints, history) in a fresh process and samples its resident memory:
anonymous (the heap: what would grow if anything held on to data) and file-backed (the pages of
the mapped arrays that the OS keeps cached, and can drop under pressure). Two dataset sizes, the
same everything else; the difference is the growth.

By default it measures the Oxford-IIIT Pet config's data shape with all of its 7,349 images
split 70/15/15 (5,144 train, 1,102 val) at 256², batch 16, the config's augmentation, against a
quarter of that. That is more training data than config/config.yaml's own split, which keeps the
official test list (3,669 images) and trains on about 3,130, so it bounds the real case. The arrays are built by tiling a small synthetic Oxford-layout set, since the
real dataset cannot be downloaded everywhere; their contents do not change how much memory a
training epoch takes. The model's memory does not depend on the dataset size, so on a CPU a
cheaper UNet than the config's ResNet-34 can stand in (--encoder, --encoder-depth,
--decoder-channels) to fit an epoch of 5,144 images in minutes; the JSON records which.

    python tools/bench/bench_memory.py --out tools/bench/results/memory-oxford-cpu.json \\
        --encoder resnet18 --encoder-depth 3 --decoder-channels 16 8 4
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from segpipe.data.preprocess import preprocess_split
from segpipe.data.remap import remap_dataset
from segpipe.data.synthetic import make_oxford_like
from segpipe.workflow.config import load_schema, section_defaults

# The data shape of the Oxford config (all 7,349 images, 70/15/15) and its train settings that
# shape memory, the model aside.
OXFORD = {
    "train_samples": 5144,
    "val_samples": 1102,
    "image_size": 256,
    "batch_size": 16,
    "augment": {"hflip": 0.5, "rotate": 10, "scale": 0.1, "color_jitter": 0.2},
}

PROBE = """
import json, resource, sys, tempfile, threading, time
from segpipe.training.train import train_model

peak = {"RssAnon": 0, "RssFile": 0}
done = threading.Event()

def sample():  # the largest anonymous (heap) and file-backed (mapped arrays) resident memory
    while not done.is_set():
        for line in open("/proc/self/status"):
            key, _, value = line.partition(":")
            if key in peak:
                peak[key] = max(peak[key], int(value.split()[0]))
        time.sleep(0.005)

thread = threading.Thread(target=sample, daemon=True)
thread.start()
with tempfile.TemporaryDirectory() as d:  # checkpoints of a ResNet-34 UNet: 0.3 GB a run
    t0 = time.perf_counter()
    train_model(sys.argv[1], sys.argv[2], best_path=d + "/b.pt", last_path=d + "/l.pt",
                history_path=d + "/h.csv", resume_dir=d + "/r", classes=["a", "b", "c"],
                threads=int(sys.argv[3]), **json.loads(sys.argv[4]))
    seconds = time.perf_counter() - t0
done.set()
thread.join()
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "peak_anon_mb": peak["RssAnon"] / 1024, "peak_file_mb": peak["RssFile"] / 1024,
                  "seconds": seconds}))
"""


def peak_memory_mb(train_array: Path, val_array: Path, options: dict, threads: int = 1) -> dict:
    """Peak resident memory of one training epoch in a fresh process, in MB: in all (ru_maxrss),
    anonymous and file-backed; ``options`` are train_model's (TrainConfig's) keyword arguments,
    the schema's defaults for those left out."""
    schema = load_schema(Path(__file__).resolve().parents[2] / "config" / "schema.yaml")
    defaults = section_defaults(schema, "train")  # train_model takes every option
    options = {**defaults, "device": "cpu", "num_workers": 0, **options, "epochs": 1}
    cmd = [sys.executable, "-c", PROBE, str(train_array), str(val_array), str(threads),
           json.dumps(options)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"memory probe failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def growth(arrays: dict[str, Path], val_array: Path, options: dict, threads: int = 1) -> dict:
    """Memory of one epoch on each of ``arrays`` (name -> train array, smallest first), and how
    much the largest grew over the smallest, beyond the growth of the train array itself."""
    memory = {}
    for name, path in arrays.items():
        train = np.load(path, mmap_mode="r")
        memory[name] = {"train_samples": len(train), "train_array_mb": train.nbytes / 2**20}
        memory[name] |= peak_memory_mb(path, val_array, options, threads)
    first, last = memory[next(iter(arrays))], memory[list(arrays)[-1]]
    grown = {k: last[k] - first[k] for k in first if k != "seconds"}
    memory["growth_mb"] = grown
    memory["rss_growth_beyond_arrays_mb"] = grown["peak_rss_mb"] - grown["train_array_mb"]
    return memory


def tiled(source: np.ndarray, n: int, path: Path) -> Path:
    """An (n, S, S, 4) array at ``path`` of ``source``'s samples repeated, written in chunks."""
    out = np.lib.format.open_memmap(
        path, mode="w+", dtype=source.dtype, shape=(n, *source.shape[1:])
    )
    for start in range(0, n, len(source)):
        stop = min(n, start + len(source))
        out[start:stop] = source[: stop - start]
    out.flush()
    del out
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-samples", type=int, default=OXFORD["train_samples"])
    parser.add_argument("--val-samples", type=int, default=OXFORD["val_samples"])
    parser.add_argument("--fraction", type=float, default=0.25, help="the smaller dataset's share")
    parser.add_argument("--image-size", type=int, default=OXFORD["image_size"])
    parser.add_argument("--batch-size", type=int, default=OXFORD["batch_size"])
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--encoder-depth", type=int, default=5)
    parser.add_argument("--decoder-channels", type=int, nargs="+", default=None)
    parser.add_argument("--source-images", type=int, default=64, help="synthetic images to tile")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    options = {
        "arch": "Unet",
        "encoder": args.encoder,
        "encoder_depth": args.encoder_depth,
        "decoder_channels": args.decoder_channels,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "augment": OXFORD["augment"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_oxford_like(root / "raw", n_images=args.source_images, seed=0)
        index = remap_dataset(
            root / "raw", root / "masks", root / "index.csv", root / "quarantine.csv",
            layout="oxford", table={1: 0, 2: 1, 3: 2}, threads=cores,
        )  # fmt: skip
        index.to_csv(root / "all.csv", index=False)
        source = np.load(
            preprocess_split(
                root / "all.csv", root / "source.npy", image_size=args.image_size, threads=cores
            )
        )
        small = max(args.batch_size, round(args.fraction * args.train_samples))
        arrays = {
            f"{small}_samples": tiled(source, small, root / "small.npy"),
            f"{args.train_samples}_samples": tiled(source, args.train_samples, root / "full.npy"),
        }
        val = tiled(source, args.val_samples, root / "val.npy")
        memory = growth(arrays, val, options, threads=cores)
    result = {
        "device": f"cpu ({platform.processor() or platform.machine()}, {cores} cores)",
        "versions": {p: importlib.metadata.version(p) for p in ("torch", "numpy", "segpipe")},
        "settings": {**vars(args), "train_options": options, "val_samples": args.val_samples},
        "peak_memory": memory,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(memory, indent=2))


if __name__ == "__main__":
    main()
