"""Training, readable top to bottom: data, model, optimiser, resume, the epoch loop, publish.

Data comes from preprocessed, memory-mapped split arrays (:mod:`segpipe.arrays`); batches are
normalised on the device. Randomness is tied to (seed, epoch, sample), so a resumed run replays
exactly what an uninterrupted run would have done.

``resume_dir`` holds ``last.pt`` (after every epoch, and mid-epoch when the job is told to stop
by SIGTERM or SIGUSR1, as Slurm does at its time limit or on preemption) and ``best.pt`` (when the
validation mIoU improves). It is not a rule output, so Snakemake does not delete it before a
rerun: the next run of the rule continues from it when the training config (the number of
epochs aside, which may grow) and the data are unchanged.

Checkpoints share one format: model, optimizer, scheduler, epoch, best score, the resolved
config and the history so far. ``resume_dir/history.csv`` is the history of the epochs in
``last.pt``, rewritten after every epoch, to read while the job runs; ``train.log_to`` adds
TensorBoard and/or DVCLive logs beside ``resume_dir`` (see :mod:`segpipe.monitor`).

With ``gpus > 1`` the same loop runs in one process per GPU under DistributedDataParallel
(nccl on CUDA, gloo on the CPU); rank 0 alone writes checkpoints, history and logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F

from segpipe.arrays import ArrayDataset, ArrayRows, Batch, EpochSampler, batch_loader
from segpipe.augment import BatchAugment
from segpipe.colors import colorize
from segpipe.data import IMAGENET_MEAN, IMAGENET_STD
from segpipe.io import atomic_path, remove_stale_temporaries, write_csv, write_json
from segpipe.logs import UserError, inherited_log_files, progress, setup_logging
from segpipe.metrics import confusion_matrix, per_class_scores, summarize
from segpipe.models import build_loss, build_model
from segpipe.monitor import TrainingMonitor, open_monitor

logger = logging.getLogger(__name__)
HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_miou",
    "val_dice",
    "lr",
    "seconds",
    "images_per_s",
]
LIVE_HISTORY = "history.csv"  # in resume_dir: the history so far, readable while training runs
# Options that change how training is watched, not what it computes: not part of the config a
# checkpoint records, so changing them keeps the resume state.
MONITOR_OPTIONS = ("log_to", "log_images_every")
PREVIEW_SAMPLES = 4  # validation samples whose predictions the loggers show as images
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STOP_CHECK_EVERY = 10  # steps between the ranks' agreement on a stop signal (DDP only)


EXIT_INTERRUPTED = 128 + signal.SIGTERM  # the exit status of a process ended by SIGTERM


class BatchTooSmallError(UserError, ValueError):
    """A training batch would hold a single sample, which BatchNorm cannot normalise."""


class TrainingInterrupted(SystemExit):
    """Raised after a stop signal, once the resumable checkpoint is safely on disk."""

    def __init__(self):
        super().__init__(EXIT_INTERRUPTED)


@dataclass
class TrainConfig:
    """The ``train`` section of the config (see config/schema.yaml for each option)."""

    arch: str = "Unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    encoder_depth: int = 5
    decoder_channels: list[int] | None = None
    decoder_dropout: float = 0.0
    loss: str = "ce+dice"
    class_weights: list[float] | None = None
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    warmup_epochs: float = 0.0
    epochs: int = 30
    batch_size: int = 16
    image_size: int = 256
    resize: str = "squash"
    image_scale: float = 1.0
    seed: int = 0
    device: str = "auto"
    gpus: int = 1
    num_workers: int | None = None
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    augment: dict[str, float] = field(default_factory=dict)
    log_to: list[str] = field(default_factory=list)
    log_images_every: int = 5


# ----------------------------------------------------------------------------- helpers


def resolve_device(name: str, rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "config option 'train.device' is 'cuda' but no CUDA device is visible"
            )
        return torch.device("cuda", rank)
    return torch.device(name)


def default_workers(device: torch.device, threads: int) -> int:
    """Loader workers when the config leaves them to segpipe.

    A batch read from the page-cached memory map costs tens of microseconds, while handing a
    batch from a worker process to the trainer costs about a millisecond (shared memory, pickling;
    ``benchmarks/bench_train.py`` measures both), so on the CPU the trainer reads its own batches.
    On CUDA the workers read and pin large batches while the main process keeps the GPU busy.
    """
    return 0 if device.type == "cpu" else min(8, max(0, threads - 1))


def train_batches(samples_per_rank: int, batch_size: int) -> tuple[bool, int]:
    """(drop_last, steps per epoch) of one rank's training loader.

    With more samples than one batch holds, the incomplete last batch is dropped, as is usual
    for training in PyTorch: it could hold a single sample, which BatchNorm cannot normalise in
    train mode. The sampler reshuffles every epoch, so every sample still takes part across
    epochs. A split that fits in one batch is that batch. Validation keeps every batch (eval
    mode: BatchNorm uses its running statistics, a batch of one is fine).
    """
    if samples_per_rank > batch_size:
        return True, samples_per_rank // batch_size
    return False, math.ceil(samples_per_rank / batch_size)


def has_batchnorm(model: torch.nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers (they need 2 or more samples per batch to train)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def check_batch_size(cfg: TrainConfig, train_samples: int, num_classes: int) -> None:
    """Fail before training, naming the option, where a training batch would hold one sample.

    Each of the ``train.gpus`` processes trains on ``train_samples // gpus`` samples; its
    smallest batch holds ``min(batch_size, samples per process)`` (see :func:`train_batches`).
    BatchNorm in train mode fails on a batch of one ("Expected more than 1 value per channel"),
    so that is refused unless the model has no BatchNorm (built without weights to find out).
    """
    per_rank = train_samples // cfg.gpus
    if per_rank == 0:
        raise BatchTooSmallError(
            f"the train split has {train_samples} samples, fewer than the {cfg.gpus} training "
            f"processes of config option 'train.gpus'"
        )
    if min(cfg.batch_size, per_rank) >= 2:
        return
    model = build_model(
        cfg.arch,
        cfg.encoder,
        num_classes,
        encoder_depth=cfg.encoder_depth,
        decoder_channels=cfg.decoder_channels,
    )
    if not has_batchnorm(model):
        return
    why = f"the {cfg.arch}-{cfg.encoder} model's BatchNorm needs at least 2 samples per batch"
    if cfg.batch_size < 2:
        raise BatchTooSmallError(
            f"config option 'train.batch_size': {cfg.batch_size} is too small: {why}; use 2 or more"
        )
    raise BatchTooSmallError(
        f"the train split has {train_samples} samples, {per_rank} per training process "
        f"(config option 'train.gpus': {cfg.gpus}), but {why}; add training samples or use "
        "fewer gpus"
    )


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, then rename: a kill never leaves a truncated checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise RuntimeError(f"{path}: not a readable segpipe checkpoint ({exc})") from exc


def publish(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to ``src`` (a copy across file systems), atomically.

    Safe because checkpoints are only ever replaced by rename, never rewritten in place.
    """
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model a checkpoint was trained with and load its weights (no download)."""
    model = model_from_config(ckpt["config"])
    model.load_state_dict(ckpt["model"])
    return model


def model_from_config(cfg: dict[str, Any]) -> torch.nn.Module:
    """The model of a (checkpoint's) config, randomly initialised (no download)."""
    train = cfg["train"]
    return build_model(
        train["arch"],
        train["encoder"],
        len(cfg["classes"]),
        encoder_weights=None,
        decoder_dropout=train["decoder_dropout"],
        encoder_depth=train.get("encoder_depth", 5),
        decoder_channels=train.get("decoder_channels"),
    )


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: ``auto`` is bf16 on CUDA (fp16 where bf16 is unsupported), off on CPU."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[setting]


@functools.cache
def _normalize_constants(device: torch.device, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / (std * scale), mean / std) as (1, 3, 1, 1) tensors, made once per device: building
    them from Python lists every step would be a host-to-device copy that waits for the GPU."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (1 / (std * scale)).to(device), (mean / std).to(device)


def normalize(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """uint8 (B, 3, H, W), or float in [0, 1] after augmentation -> float, ImageNet-normalised,
    as smp encoders expect (a new tensor; one conversion pass, then in place)."""
    mul, sub = _normalize_constants(images.device, 255.0 if images.dtype == torch.uint8 else 1.0)
    out = images.to(torch.float32, copy=True)
    out.mul_(mul).sub_(sub)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def prepare_batch(
    batch: Batch,
    device: torch.device,
    channels_last: bool,
    augment: BatchAugment | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch -> model-ready images and long masks on the device, augmented there
    (per-sample seeds) when ``augment`` is given."""
    images, masks = batch.unpack(device)
    # One gather out of the packed RGB+mask layout into the layout the model wants; the passes
    # after it run over dense memory.
    layout = torch.channels_last if channels_last else torch.contiguous_format
    images = images.contiguous(memory_format=layout)
    if augment:
        images, masks = augment(images, masks, batch.seeds)
    return normalize(images, channels_last), masks.long()


def pad_to_multiple(
    images: torch.Tensor, masks: torch.Tensor, ignore_index: int, multiple: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and masks padded at the bottom and right to a multiple of ``multiple`` (what an
    encoder's downsampling needs; whole images kept at their scale need it), the padded mask
    pixels ``ignore_index``; unchanged when they are already."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if not (pad_h or pad_w):
        return images, masks
    images = F.pad(images, (0, pad_w, 0, pad_h))
    return images, F.pad(masks, (0, pad_w, 0, pad_h), value=ignore_index)


def _make_scheduler(opt, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)
    if cfg.scheduler == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return torch.optim.lr_scheduler.LambdaLR(opt, cosine)


class StopRequest:
    """Records SIGTERM/SIGUSR1 so the loop can checkpoint at the next step, then stop."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, device: torch.device, step: int) -> bool:
        """True on every rank as soon as any rank was signalled (all ranks stop at one step).

        A single process reads its own flag. Data-parallel ranks agree through an all-reduce,
        which makes the host wait for the device, so they do it only every
        ``STOP_CHECK_EVERY`` steps (a signal arrives minutes before the time limit).
        """
        if not dist.is_initialized():
            return self.signum is not None
        if step % STOP_CHECK_EVERY:
            return False
        flag = torch.tensor([1 if self.signum is not None else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def train_step(model, loss_fn, opt, scaler, images, masks, device, amp):
    """One optimisation step on a prepared batch (:func:`prepare_batch`); returns the loss."""
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(images)
    loss = loss_fn(logits.float(), masks)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach()


@torch.no_grad()
def validate(
    model,
    loader,
    loss_fn,
    num_classes: int,
    ignore_index: int,
    device,
    *,
    amp=None,
    channels_last=False,
) -> dict[str, Any]:
    """Validation loss and confusion-matrix metrics, summed over all data-parallel ranks."""
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * n, n
    for batch in loader:
        images, masks = pad_to_multiple(*prepare_batch(batch, device, channels_last), ignore_index)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(images)
        logits = logits.float()
        sums[0] += loss_fn(logits, masks).double() * len(images)
        sums[1] += len(images)
        cm += confusion_matrix(logits.argmax(1), masks, num_classes, ignore_index)
    if dist.is_initialized():
        dist.all_reduce(cm)
        dist.all_reduce(sums)
    cm = cm.cpu()
    return {
        "loss": (sums[0] / sums[1].clamp(min=1)).item(),
        **summarize(cm),
        "per_class": per_class_scores(cm),
    }


@torch.no_grad()
def preview_predictions(
    model,
    dataset: ArrayDataset,
    count: int,
    num_classes: int,
    ignore_index: int,
    device,
    *,
    amp=None,
    channels_last=False,
) -> list[np.ndarray]:
    """The first ``count`` samples of ``dataset`` as RGB uint8 (H, W, 3) panels: the image, the
    true mask and the predicted mask side by side (class colours as in the report)."""
    batch = dataset.__getitems__(list(range(min(count, len(dataset)))))
    raw_images, masks = batch.unpack("cpu")
    images, padded_masks = pad_to_multiple(*prepare_batch(batch, device, channels_last), 0)
    model.eval()
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = model(images)
    height, width = masks.shape[-2:]
    predicted = logits.float().argmax(1)[:, :height, :width].cpu().numpy()
    panels = []
    for image, mask, pred in zip(
        raw_images.permute(0, 2, 3, 1).numpy(), masks.numpy(), predicted, strict=True
    ):
        gap = np.full((image.shape[0], 2, 3), 255, dtype=np.uint8)
        true_rgb = colorize(mask, num_classes, ignore_index)
        pred_rgb = colorize(pred, num_classes, ignore_index)
        panels.append(np.concatenate([image, gap, true_rgb, gap, pred_rgb], axis=1))
    return panels


def write_live_history(resume_dir: str | Path, history: list[dict[str, Any]]) -> None:
    """``resume_dir/history.csv``: the epochs of the resume state, same columns as history.csv."""
    write_csv(Path(resume_dir) / LIVE_HISTORY, pd.DataFrame(history, columns=HISTORY_COLUMNS))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _closing(monitor: TrainingMonitor):
    """Close the loggers however the loop ends (a stop signal included), flushing what they hold."""
    try:
        yield monitor
    finally:
        monitor.close()


# ----------------------------------------------------------------------------- entry point


def train_model(
    train_data: str | Path | ArrayRows,
    val_data: str | Path | ArrayRows,
    *,
    best_path: str | Path,
    last_path: str | Path,
    history_path: str | Path,
    resume_dir: str | Path,
    classes: list[str],
    ignore_index: int = 255,
    threads: int = 1,
    model_path: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train on a preprocessed split array, select the best epoch by validation mean IoU.

    ``train_data`` / ``val_data`` are ``.npy`` arrays written by
    :func:`segpipe.arrays.preprocess_split`, or rows of them (:func:`segpipe.arrays.select_rows`:
    a cross-validation fold); ``options`` are the fields of :class:`TrainConfig`.
    Writes the best and last checkpoints, the per-epoch history CSV and, given ``model_path``, the
    model's description (:func:`write_model_card`); returns the last checkpoint. Raises :class:`TrainingInterrupted` after checkpointing on SIGTERM/SIGUSR1, and
    :class:`BatchTooSmallError` before training where a batch would hold a single sample.
    Temporaries that killed checkpoint writes left in ``resume_dir`` are removed first.
    """
    cfg = TrainConfig(**options)
    train_data, val_data = (
        data if isinstance(data, ArrayRows) else ArrayRows.whole(data)
        for data in (train_data, val_data)
    )
    check_batch_size(cfg, len(ArrayDataset(train_data)), len(classes))
    remove_stale_temporaries(resume_dir)
    args = (
        cfg,
        train_data,
        val_data,
        str(best_path),
        str(last_path),
        str(history_path),
        str(resume_dir),
        list(classes),
        ignore_index,
        threads,
        train_data.digest() + val_data.digest(),  # once here, not once per rank
    )
    if cfg.gpus == 1:
        _train(0, 1, None, *args)
    else:
        port = _free_port()
        logger.info("starting %d data-parallel processes (DistributedDataParallel)", cfg.gpus)
        with StopRequest():  # the ranks handle the signal; the parent waits for their checkpoint
            try:
                torch.multiprocessing.start_processes(
                    _train,
                    args=(cfg.gpus, port, *args, inherited_log_files()),
                    nprocs=cfg.gpus,
                    join=True,
                    # fork, not spawn: spawn re-runs the unguarded __main__ of a Snakemake
                    # script. The parent has not initialised CUDA, so forking is safe.
                    start_method="fork",
                )
            except torch.multiprocessing.ProcessExitedException as exc:
                if exc.exit_code == EXIT_INTERRUPTED:
                    raise TrainingInterrupted() from None
                raise
    if model_path is not None:
        write_model_card(model_path, load_checkpoint(best_path))
    return load_checkpoint(last_path)


def write_model_card(path: str | Path, ckpt: dict[str, Any]) -> None:
    """``model.json``: architecture, encoder and parameter counts of a checkpoint's model."""
    model = model_from_checkpoint(ckpt)
    train = ckpt["config"]["train"]
    params = list(model.parameters())
    write_json(
        path,
        {
            "arch": train["arch"],
            "encoder": train["encoder"],
            "parameters": sum(p.numel() for p in params),
            "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        },
    )


def _train(
    rank: int,
    world_size: int,
    port: int | None,
    cfg: TrainConfig,
    train_data: ArrayRows,
    val_data: ArrayRows,
    best_path: str,
    last_path: str,
    history_path: str,
    resume_dir: str,
    classes: list[str],
    ignore_index: int,
    threads: int,
    data_digest: str,
    log_files: list[str] | None = None,
) -> None:
    """The training loop of one rank (the only one when ``world_size`` is 1)."""
    distributed = world_size > 1
    device = resolve_device(cfg.device, rank if distributed else 0)
    if distributed:
        if rank == 0 and log_files:
            setup_logging(log_files[0], append=True)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
        )
        if device.type == "cuda":
            torch.cuda.set_device(device)
    is_main = rank == 0
    num_classes = len(classes)
    threads_per_rank = max(1, threads // world_size)
    torch.set_num_threads(threads_per_rank)
    workers = (
        cfg.num_workers
        if cfg.num_workers is not None
        else default_workers(device, threads_per_rank)
    )
    amp = amp_dtype(cfg.amp, device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    resolved = {
        "train": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in MONITOR_OPTIONS},
        "classes": list(classes),
        "ignore_index": ignore_index,
    }
    if is_main:
        logger.info(
            "training %s-%s on %s x%d, %d threads and %d loader workers per process, amp %s, channels_last %s, compile %s",
            cfg.arch,
            cfg.encoder,
            device.type,
            world_size,
            threads_per_rank,
            workers,
            amp,
            channels_last,
            cfg.compile,
        )

    # Data: memory-mapped arrays read a batch at a time; augmentation (seeded per sample) and
    # normalisation run batched on the device.
    crop = cfg.image_size if cfg.resize == "keep_aspect" else None
    augment = BatchAugment(**cfg.augment, ignore_index=ignore_index, crop=crop)
    train_set = ArrayDataset(train_data, ignore_index)
    val_set = ArrayDataset(val_data, ignore_index)
    sampler = EpochSampler(len(train_set), seed=cfg.seed, rank=rank, world_size=world_size)
    val_sampler = EpochSampler(
        len(val_set),
        seed=cfg.seed,
        shuffle=False,
        rank=rank,
        world_size=world_size,
        drop_tail=False,
    )
    loader_kw = dict(
        batch_size=cfg.batch_size,
        workers=workers,
        pin_memory=device.type == "cuda",
        # Own generators: a DataLoader otherwise draws its base seed from the global RNG,
        # which would shift dropout after a resume.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    drop_last, steps_per_epoch = train_batches(len(sampler), cfg.batch_size)
    train_loader = batch_loader(train_set, sampler=sampler, drop_last=drop_last, **loader_kw)
    val_loader = batch_loader(val_set, sampler=val_sampler, **loader_kw)

    # Model, loss, optimiser, schedule.
    torch.manual_seed(cfg.seed)
    raw_model = build_model(
        cfg.arch,
        cfg.encoder,
        num_classes,
        encoder_weights=cfg.encoder_weights,
        decoder_dropout=cfg.decoder_dropout,
        encoder_depth=cfg.encoder_depth,
        decoder_channels=cfg.decoder_channels,
    ).to(device)
    if channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss, class_weights=cfg.class_weights, ignore_index=ignore_index).to(
        device
    )
    opt = torch.optim.AdamW(raw_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _make_scheduler(opt, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    model = raw_model
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            raw_model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # A shallower encoder keeps smp's unused deeper stages, which get no gradient.
            find_unused_parameters=cfg.encoder_depth < 5,
        )
    if cfg.compile:
        model = torch.compile(model)

    # Resume: same config (epochs may grow) and same data.
    done_epochs, best_score, best_epoch, history, partial = 0, -1.0, 0, [], None
    resume_last, resume_best = Path(resume_dir) / "last.pt", Path(resume_dir) / "best.pt"
    if resume_last.exists() and resume_best.exists():
        state = load_checkpoint(resume_last, map_location=device)
        saved = state.get("config", {})
        same = {**saved, "train": {**saved.get("train", {}), "epochs": cfg.epochs}} == resolved
        if same and state.get("data_digest") == data_digest and state["epoch"] <= cfg.epochs:
            raw_model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR):
                sched.total_steps = cfg.epochs * steps_per_epoch
            scaler.load_state_dict(state["scaler"])
            done_epochs, best_score, best_epoch = (
                state["epoch"],
                state["best_score"],
                state["best_epoch"],
            )
            history, partial = state["history"], state.get("partial")
            if is_main:
                where = (
                    f"epoch {partial['epoch']} step {partial['steps']}"
                    if partial
                    else f"the end of epoch {done_epochs}"
                )
                logger.info("resuming from %s at %s", resume_last, where)
                if saved["train"]["epochs"] != cfg.epochs:
                    logger.info(
                        "extending training from %d to %d epochs",
                        saved["train"]["epochs"],
                        cfg.epochs,
                    )
        elif is_main:
            logger.warning("ignoring %s: it was written for another config or data", resume_dir)

    # Watching: the live history and the loggers continue from the resume state (rank 0 only).
    monitor = TrainingMonitor()
    if is_main:
        write_live_history(resume_dir, history)
        monitor = open_monitor(
            cfg.log_to,
            Path(resume_dir).parent,
            start_epoch=done_epochs,
            history=history,
            images_every=cfg.log_images_every,
        )

    def checkpoint(epoch: int, partial_state: dict | None = None) -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu() for k, v in raw_model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "epoch": epoch,
            "best_score": best_score,
            "best_epoch": best_epoch,
            "config": resolved,
            "history": history,
            "data_digest": data_digest,
            "partial": partial_state,
        }

    with StopRequest() as stop, _closing(monitor):
        for epoch in range(done_epochs + 1, cfg.epochs + 1):
            # Seed per epoch (dropout etc.); samples and augmentations are seeded per sample.
            torch.manual_seed(cfg.seed * 100_003 + epoch)
            steps, loss_sum, seen, elapsed = 0, 0.0, 0, 0.0
            if partial and partial["epoch"] == epoch:
                steps, loss_sum, seen, elapsed = (
                    partial["steps"],
                    partial["loss_sum"],
                    partial["seen"],
                    partial["elapsed"],
                )
                torch.set_rng_state(partial["rng"])
            # Summed on the device: reading the loss back every step would make the host wait
            # for the GPU at each step.
            loss_total = torch.tensor(loss_sum, dtype=torch.float64, device=device)
            partial = None
            sampler.set_epoch(epoch, skip=steps * cfg.batch_size)
            model.train()
            t0 = time.perf_counter()
            batches = (
                progress(train_loader, desc=f"epoch {epoch}/{cfg.epochs}", logger=logger)
                if is_main
                else train_loader
            )
            for batch in batches:
                images, masks = prepare_batch(batch, device, channels_last, augment)
                loss = train_step(model, loss_fn, opt, scaler, images, masks, device, amp)
                sched.step()
                steps += 1
                loss_total += loss.double() * len(images)
                seen += len(images)
                if stop.agreed(device, steps):
                    mid = {
                        "epoch": epoch,
                        "steps": steps,
                        "loss_sum": loss_total.item(),
                        "seen": seen,
                        "rng": torch.get_rng_state(),
                        "elapsed": elapsed + time.perf_counter() - t0,
                    }
                    if is_main:
                        save_checkpoint(resume_last, checkpoint(epoch - 1, mid))
                        logger.warning(
                            "signal %s: saved a resumable checkpoint at epoch %d step %d in %s; rerun the rule to resume",
                            stop.signum,
                            epoch,
                            steps,
                            resume_last,
                        )
                    if distributed:
                        dist.barrier()
                        dist.destroy_process_group()
                    raise TrainingInterrupted()
            t_end = time.perf_counter()
            train_seconds = elapsed + t_end - t0
            stats = torch.stack(
                [loss_total, torch.tensor(seen, dtype=torch.float64, device=device)]
            )
            if distributed:
                dist.all_reduce(stats)
            val = validate(
                model,
                val_loader,
                loss_fn,
                num_classes,
                ignore_index,
                device,
                amp=amp,
                channels_last=channels_last,
            )
            row = {
                "epoch": epoch,
                "train_loss": (stats[0] / stats[1].clamp(min=1)).item(),
                "val_loss": val["loss"],
                "val_miou": val["mean_iou"],
                "val_dice": val["mean_dice"],
                "lr": opt.param_groups[0]["lr"],
                "seconds": train_seconds + time.perf_counter() - t_end,
                "images_per_s": stats[1].item() / train_seconds if train_seconds else float("nan"),
            }
            history.append(row)
            score = val["mean_iou"] if not math.isnan(val["mean_iou"]) else -1.0
            improved = score > best_score or best_epoch == 0
            if improved:
                best_score, best_epoch = score, epoch
            if is_main:
                logger.info(
                    "epoch %d/%d train_loss %.4f val_loss %.4f val_mIoU %.4f val_Dice %.4f lr %.2e %.1f s (%.1f img/s)",
                    epoch,
                    cfg.epochs,
                    *(row[k] for k in HISTORY_COLUMNS[1:]),
                )
                # Logged before the checkpoint: a logger discards what it logged after the
                # epoch a rerun resumes from (see segpipe.monitor).
                images = None
                if monitor.wants_images(epoch, cfg.epochs):
                    images = preview_predictions(
                        raw_model,
                        val_set,
                        PREVIEW_SAMPLES,
                        num_classes,
                        ignore_index,
                        device,
                        amp=amp,
                        channels_last=channels_last,
                    )
                monitor.log_epoch(
                    epoch, row, dict(zip(classes, val["per_class"]["iou"], strict=True)), images
                )
                state = checkpoint(epoch)
                if improved:
                    save_checkpoint(resume_best, state)
                save_checkpoint(resume_last, state)
                write_live_history(resume_dir, history)

    if distributed:
        samples = [None] * world_size
        dist.all_gather_object(samples, sampler.indices())
        dist.barrier()
        dist.destroy_process_group()
    if not is_main:
        return
    # Publish the resume state as the rule outputs (hard links, each an atomic rename).
    final = load_checkpoint(resume_last)
    if distributed:
        # Which train samples each rank used in the last epoch: disjoint by construction.
        final["rank_samples"] = samples
        save_checkpoint(resume_last, final)
    publish(resume_best, best_path)
    publish(resume_last, last_path)
    write_csv(history_path, pd.DataFrame(history, columns=HISTORY_COLUMNS))
    logger.info("best val mIoU %.4f at epoch %d", best_score, best_epoch)
