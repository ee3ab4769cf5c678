"""Training-speed benchmark: does segpipe's data path keep the model fed? Writes one JSON file.

In one run, on one machine, model and batch size, it measures images/s for
  (a) naive:     a DataLoader decoding and resizing each JPEG in __getitem__ (as smp's pets example),
                 at its best number of workers,
  (b) loader:    segpipe's loader alone: batches read from the memory-mapped preprocessed array,
                 moved to the device, augmented (per-sample seeds) and normalised there, ready for
                 the model, as training gets them,
  (c) model:     model-only training steps on tensors already on the device (the data-path ceiling),
  (d) train:     segpipe's end-to-end training step (loader + the same train_step as training),
and on CUDA also (d) with fp32 eager vs the fast settings (bf16 autocast, channels_last, optional
torch.compile). Also: remap and preprocess throughput with 1 vs all cores, and peak memory (RSS)
of training on two dataset sizes (bench_memory.py), to show it does not grow beyond the
memory-mapped arrays.

    python tools/bench/bench_train.py --out tools/bench/results/cpu.json            # defaults for CPU
    python tools/bench/bench_train.py --image-size 256 --batch-size 64 --out tools/bench/results/h100.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

import segpipe
from segpipe.data.arrays import ArrayDataset, EpochSampler, batch_loader
from segpipe.data.preprocess import preprocess_split
from segpipe.data.remap import remap_dataset
from segpipe.data.split import read_manifest
from segpipe.data.synthetic import make_oxford_like
from segpipe.models.build import build_loss, build_model
from segpipe.models.device import amp_dtype, prepare_batch, resolve_device
from segpipe.training.augment import BatchAugment
from segpipe.training.distributed import default_workers
from segpipe.training.train import train_step

from bench_memory import growth, tiled
from naive_loader import SegmentationDataset

# The same augmentation on both sides: a torchvision v2 transform per item for the naive loader,
# segpipe's batched one for segpipe's.
AUGMENT = {"hflip": 0.5}
NAIVE_AUGMENT = v2.RandomHorizontalFlip(AUGMENT["hflip"])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rate(fn, steps: int, batch: int, device: torch.device, warmup: int = 2) -> float:
    """Images per second of ``steps`` calls of ``fn`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def cycling(loader):
    while True:
        yield from loader


def make_dataset(root: Path, n_images: int, threads: int) -> dict:
    """Synthetic Oxford-layout data, remapped and split into one manifest; remap timed 1 vs N."""
    make_oxford_like(root / "raw", n_images=n_images, seed=0, min_size=200, max_size=500)
    timings = {}
    for t in sorted({1, threads}):
        t0 = time.perf_counter()
        index = remap_dataset(
            root / "raw", root / "masks", root / "index.csv", root / "quarantine.csv",
            layout="oxford", table={1: 0, 2: 1, 3: 2}, threads=t,
        )  # fmt: skip
        timings[t] = len(index) / (time.perf_counter() - t0)
    index[["id", "image", "mask", "group", "height", "width"]].to_csv(root / "all.csv", index=False)
    return {"manifest": root / "all.csv", "remap_images_per_s": timings}


def model_and_opt(args, device, channels_last):
    model = build_model("Unet", args.encoder, 3).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, opt


def measure_training(args, device, array: Path, *, amp, channels_last, compile_, workers) -> dict:
    """(c) model-only and (d) end-to-end training step with the given fast settings."""
    loss_fn = build_loss("ce+dice").to(device)
    model, opt = model_and_opt(args, device, channels_last)
    step_model = torch.compile(model) if compile_ else model
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    augment = BatchAugment(**AUGMENT)
    loader = segpipe_loader(args, device, array, workers)
    # (c) trains on one batch, prepared once and kept on the device.
    images, masks = prepare_batch(next(iter(loader)), device, channels_last, augment)

    def model_only():
        train_step(step_model, loss_fn, opt, scaler, images, masks, device, amp)

    batches = cycling(loader)

    def end_to_end():
        x, y = prepare_batch(next(batches), device, channels_last, augment)
        train_step(step_model, loss_fn, opt, scaler, x, y, device, amp)

    # Interleave the two measurements so drift in machine load hits both alike.
    c, d = [], []
    for _ in range(args.repeats):
        c.append(rate(model_only, args.steps, args.batch_size, device))
        d.append(rate(end_to_end, args.steps, args.batch_size, device))
    return {"model_only": float(np.median(c)), "end_to_end": float(np.median(d))}


def segpipe_loader(args, device, array: Path, workers: int) -> DataLoader:
    """The loader training builds (segpipe.training.train): same sampler, workers, pinning, prefetch."""
    data = ArrayDataset(array)
    return batch_loader(
        data, batch_size=args.batch_size, sampler=EpochSampler(len(data), seed=0),
        workers=workers, pin_memory=device.type == "cuda", drop_last=True,
    )  # fmt: skip


def loader_rates(args, device, manifest: Path, array: Path, worker_counts, channels_last) -> dict:
    """(a) naive per-item JPEG decoding vs (b) segpipe's loader, both delivering augmented,
    normalised batches on the device, ready for the model; images/s per number of workers.

    Both keep their workers alive across epochs (generous to the naive loader: smp's example
    does not), and each figure is the median of ``repeats`` runs of ``loader_steps`` batches
    after a warm-up that drains the prefetch buffers, the two loaders interleaved.
    """
    augment = BatchAugment(**AUGMENT)
    rates: dict = {"naive": {}, "segpipe": {}}
    for workers in worker_counts:
        naive = DataLoader(
            SegmentationDataset(read_manifest(manifest), args.image_size, augment=NAIVE_AUGMENT),
            batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
        )  # fmt: skip
        naive_it = cycling(naive)
        ours_it = cycling(segpipe_loader(args, device, array, workers))

        def take_naive(naive_it=naive_it):
            x, y = next(naive_it)
            x.to(device, non_blocking=True), y.to(device, non_blocking=True)

        def take_ours(ours_it=ours_it):
            prepare_batch(next(ours_it), device, channels_last, augment)

        warmup, a, b = 4 * max(1, workers) + 2, [], []
        for _ in range(args.repeats):
            a.append(rate(take_naive, args.loader_steps, args.batch_size, device, warmup=warmup))
            b.append(rate(take_ours, args.loader_steps, args.batch_size, device, warmup=warmup))
        rates["naive"][str(workers)] = float(np.median(a))
        rates["segpipe"][str(workers)] = float(np.median(b))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--images", type=int, default=96, help="synthetic images (varied sizes 200-500 px)"
    )
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    parser.add_argument("--loader-steps", type=int, default=150, help="timed batches per loader")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="segpipe's loader workers (default: what training picks, segpipe.training.distributed.default_workers)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="include torch.compile in the CUDA fast settings"
    )
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    device = resolve_device("auto")
    workers = args.workers if args.workers is not None else default_workers(device, cores)
    # Both loaders with no workers and with one per spare core; (a) is the naive loader's best.
    worker_counts = sorted({0, max(0, min(8, cores - 1)), workers})
    torch.set_num_threads(cores)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    result: dict = {
        "device": torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {cores} cores)",
        "versions": {
            p: importlib.metadata.version(p)
            for p in ("torch", "torchvision", "segmentation_models_pytorch", "kornia")
        }
        # From the module: on a GPU machine segpipe runs from src/ without being installed.
        | {"segpipe": segpipe.__version__},
        "python": platform.python_version(),
        "settings": {
            **vars(args),
            "workers": workers,
            "loader_worker_counts": worker_counts,
            "cores": cores,
            "model": f"Unet-{args.encoder}",
            "augment": AUGMENT,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = make_dataset(root, args.images, cores)
        result["remap_images_per_s"] = {
            "1_core": data["remap_images_per_s"][1],
            f"{cores}_cores": data["remap_images_per_s"][cores],
        }
        pre = {}
        for t in sorted({1, cores}):
            t0 = time.perf_counter()
            preprocess_split(
                data["manifest"], root / "all.npy", image_size=args.image_size, threads=t
            )
            pre[f"{t}_core{'s' if t > 1 else ''}"] = args.images / (time.perf_counter() - t0)
        result["preprocess_images_per_s"] = pre
        array = root / "all.npy"

        amp, channels_last = (
            (amp_dtype("auto", device), True) if device.type == "cuda" else (None, False)
        )
        by_workers = loader_rates(
            args, device, data["manifest"], array, worker_counts, channels_last
        )
        result["loader_images_per_s_by_workers"] = by_workers
        result["naive_loader"] = max(by_workers["naive"].values())
        result["segpipe_loader"] = by_workers["segpipe"][str(workers)]
        fast = measure_training(
            args,
            device,
            array,
            amp=amp,
            channels_last=channels_last,
            compile_=args.compile and device.type == "cuda",
            workers=workers,
        )
        result["model_only"], result["end_to_end"] = fast["model_only"], fast["end_to_end"]
        result["ratios"] = {
            "b_over_a": result["segpipe_loader"] / result["naive_loader"],
            "d_over_c": result["end_to_end"] / result["model_only"],
        }
        if device.type == "cuda":
            fp32 = measure_training(
                args, device, array, amp=None, channels_last=False, compile_=False, workers=workers
            )
            result["fp32_eager"] = fp32
            result["fast_settings"] = {
                "amp": str(amp),
                "channels_last": True,
                "compile": args.compile,
            }
            result["ratios"]["fast_over_fp32"] = result["end_to_end"] / fp32["end_to_end"]

        if not args.skip_memory:
            # Train on the array and on 4 copies of it, validating on the same small array.
            arr = np.load(array, mmap_mode="r")
            val, big = root / "val.npy", root / "big.npy"
            np.save(val, arr[: max(1, len(arr) // 8)])
            tiled(arr, 4 * len(arr), big)
            options = {"encoder": args.encoder, "batch_size": args.batch_size,
                       "image_size": args.image_size}  # fmt: skip
            result["peak_memory"] = growth({"1x": array, "4x": big}, val, options)
    result["max_rss_of_benchmark_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "device",
                    "naive_loader",
                    "segpipe_loader",
                    "model_only",
                    "end_to_end",
                    "ratios",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
