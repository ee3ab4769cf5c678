"""Training, readable top to bottom: data, model, optimiser, resume, the epoch loop, publish.

Data comes from preprocessed, memory-mapped split arrays (:mod:`segpipe.data.arrays`); batches are
normalised on the device (:mod:`segpipe.models.device`, shared with prediction). Randomness is tied to
(seed, epoch, sample), so a resumed run replays exactly what an uninterrupted run would have done.

``resume_dir`` holds ``last.pt`` (after every epoch, and mid-epoch when the job is told to stop
by SIGTERM or SIGUSR1, as Slurm does at its time limit or on preemption) and ``best.pt`` (when the
validation mIoU improves), with their digests (``checkpoints.json``). It is not a rule output,
so Snakemake does not delete it before a rerun: the next run of the rule continues from it when
the training config (the number of epochs aside, which may grow) and the data are unchanged,
and its checkpoints are the ones training wrote (the rule outputs are hard links of them, and a
file copied over one writes through: then training starts afresh). The learning-rate schedule is planned
for ``train.schedule_epochs`` (``train.epochs`` when null), so a run trained in stages with
growing ``epochs`` on one planned schedule ends as a run trained straight to its end.

Checkpoints share one format: model, optimizer, scheduler, epoch, best score, the resolved
config and the history so far. ``resume_dir/history.csv`` is the history of the epochs in
``last.pt``, rewritten after every epoch, to read while the job runs; ``train.log_to`` adds
TensorBoard and/or DVCLive logs beside ``resume_dir`` (see :mod:`segpipe.training.monitor`).

With ``gpus > 1`` the same loop runs in one process per GPU under DistributedDataParallel
(nccl on CUDA, gloo on the CPU); rank 0 alone writes checkpoints, history and logs.

:func:`_train` is the loop of one process; the steps it calls follow it in this file, in the
order it calls them. Around it, each in a module of its own: the options and what a run is
given (:mod:`~segpipe.training.train_job`), the checks before training
(:mod:`~segpipe.training.preflight`), the processes and their devices
(:mod:`~segpipe.training.distributed`), the resume state (:mod:`~segpipe.training.resume`), the
learning-rate schedules (:mod:`~segpipe.training.schedule`), the optimisers
(:mod:`~segpipe.training.optimizers`), the stop signals (:mod:`~segpipe.training.stop_signals`)
and the loggers' prediction previews (:mod:`~segpipe.training.previews`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from segpipe.data.arrays import ArrayDataset, EpochSampler, batch_loader
from segpipe.data.preprocess import ArrayRows
from segpipe.evaluation.metrics import confusion_matrix, per_class_scores, summarize
from segpipe.io import remove_stale_temporaries, write_csv, write_json
from segpipe.logs import progress
from segpipe.models.argmax import class_ids
from segpipe.models.build import build_loss, build_model
from segpipe.models.checkpoints import load_checkpoint, publish, save_checkpoint
from segpipe.models.device import autocast, pad_to_multiple, prepare_batch
from segpipe.processes import die_with_parent
from segpipe.training.augment import BatchAugment
from segpipe.training.distributed import (
    Process,
    leave_process_group,
    setup_process,
    train_data_parallel,
)
from segpipe.training.lock import hold_resume_state
from segpipe.training.monitor import TrainingMonitor, open_monitor
from segpipe.training.optimizers import build_optimizer
from segpipe.training.preflight import check_batch_size
from segpipe.training.previews import PREVIEW_SAMPLES, preview_predictions
from segpipe.training.resume import EpochProgress, TrainState, resume
from segpipe.training.schedule import make_scheduler
from segpipe.training.stop_signals import StopRequest, TrainingInterrupted
from segpipe.training.train_job import Job, TrainConfig

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


@dataclass
class Loaders:
    """The batches of one process: training (reshuffled every epoch) and validation."""

    train: DataLoader
    val: DataLoader
    sampler: EpochSampler  # the training loader's
    augment: BatchAugment
    val_set: ArrayDataset  # the loggers' previews show its first samples
    steps_per_epoch: int


@dataclass
class EpochResult:
    """One trained epoch, summed over the processes: mean loss, images and training seconds."""

    loss: float
    images: float
    seconds: float
    ended: float  # time.perf_counter() at the end of training; validation time counts from it


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
    weights_cache: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train on a preprocessed split array, select the best epoch by validation mean IoU.

    ``train_data`` / ``val_data`` are ``.npy`` arrays written by
    :func:`segpipe.data.preprocess.preprocess_split`, or rows of them (:func:`segpipe.data.preprocess.select_rows`:
    a cross-validation fold); ``options`` are the fields of :class:`TrainConfig`, every one.
    Writes the best and last checkpoints, the per-epoch history CSV and, given ``model_path``, the
    model's description (:func:`write_model_card`); returns the last checkpoint. Raises :class:`TrainingInterrupted` after checkpointing on SIGTERM/SIGUSR1, and
    :class:`BatchTooSmallError` before training where a batch would hold a single sample, and
    :class:`segpipe.training.lock.ResumeStateLockedError` while another process trains into
    ``resume_dir``. Temporaries that killed checkpoint writes left in ``resume_dir`` are
    removed first.
    With ``weights_cache``, train.encoder_weights are read from that folder only, offline
    (:mod:`segpipe.models.pretrained`).
    """
    cfg = TrainConfig(**options)
    train_rows, val_rows = (
        data if isinstance(data, ArrayRows) else ArrayRows.whole(data)
        for data in (train_data, val_data)
    )
    check_batch_size(cfg, len(ArrayDataset(train_rows)), len(classes))
    # One training writes a resume folder at a time (segpipe.training.lock).
    with hold_resume_state(resume_dir):
        remove_stale_temporaries(resume_dir)
        job = Job(
            cfg=cfg,
            train_data=train_rows,
            val_data=val_rows,
            classes=list(classes),
            ignore_index=ignore_index,
            threads=threads,
            resume_dir=Path(resume_dir),
            best_path=str(best_path),
            last_path=str(last_path),
            history_path=str(history_path),
            data_digest=train_rows.digest() + val_rows.digest(),
            weights_cache=None if weights_cache is None else str(weights_cache),
            model_path=None if model_path is None else str(model_path),
        )
        if cfg.gpus == 1:
            _train(0, 1, None, job)
        else:
            train_data_parallel(_train, job)
    return load_checkpoint(last_path)


# ----------------------------------------------------------------------------- the loop


def _train(
    rank: int,
    world_size: int,
    port: int | None,
    job: Job,
    log_files: list[str] | None = None,
    parent: int | None = None,
) -> None:
    """The training loop of one process (the only one when ``world_size`` is 1; a data-parallel
    rank dies with ``parent``, the process that started the ranks, however it ends: torch's
    start_processes asks for SIGINT, which a rank blocked in a collective may not act on;
    segpipe.processes makes it SIGKILL)."""
    if parent is not None:
        die_with_parent(parent)
    # Process and device: threads, loader workers, autocast; data-parallel ranks join a group.
    proc = setup_process(rank, world_size, port, job, log_files)
    # Data: memory-mapped arrays read a batch at a time; augmentation (seeded per sample) and
    # normalisation run batched on the device.
    loaders = build_loaders(job, proc)
    # Model, loss, optimiser, schedule; then the resume state, if it fits this config and data.
    state = build_state(job, proc, loaders.steps_per_epoch)
    resume(state, job, proc)
    # Watching: the live history and the loggers continue from the resume state (rank 0 only).
    monitor = open_watchers(state, job, proc)

    with StopRequest() as stop, contextlib.closing(monitor):
        for epoch in range(state.epoch + 1, job.cfg.epochs + 1):
            # Train; on a stop signal this checkpoints the epoch so far and raises.
            trained = run_epoch(epoch, state, loaders, job, proc, stop)
            val = validate(
                state.model,
                loaders.val,
                state.loss_fn,
                len(job.classes),
                job.ignore_index,
                proc.device,
                amp=proc.amp,
                channels_last=proc.channels_last,
                padded=job.cfg.model_input.keeps_aspect,
            )
            row = record_epoch(state, epoch, trained, val)
            if proc.is_main:
                # Logged before the checkpoint: a logger discards what it logged after the
                # epoch a rerun resumes from (see segpipe.training.monitor).
                report_epoch(monitor, state, row, val, job, proc, loaders.val_set)
                save_epoch(state, job)

    # Publish the resume state as the rule outputs, once every rank is done.
    rank_samples = leave_process_group(proc, loaders.sampler)
    if proc.is_main:
        publish_outputs(state, job, rank_samples)


# ----------------------------------------------------------------------------- the steps


def build_loaders(job: Job, proc: Process) -> Loaders:
    """This process's share of the training batches (drop_last as :func:`train_batches` says)
    and of the validation batches, and the augmentation applied on the device."""
    cfg = job.cfg
    crop = cfg.model_input.crop
    augment = BatchAugment(**cfg.augment, ignore_index=job.ignore_index, crop=crop)
    train_set = ArrayDataset(job.train_data, job.ignore_index)
    val_set = ArrayDataset(job.val_data, job.ignore_index)
    ranks: dict[str, Any] = dict(rank=proc.rank, world_size=proc.world_size)
    sampler = EpochSampler(len(train_set), seed=cfg.seed, **ranks)
    val_sampler = EpochSampler(len(val_set), seed=cfg.seed, shuffle=False, drop_tail=False, **ranks)
    loader_kw: dict[str, Any] = dict(
        batch_size=cfg.batch_size,
        workers=proc.workers,
        pin_memory=proc.device.type == "cuda",
        # Own generators: a DataLoader otherwise draws its base seed from the global RNG,
        # which would shift dropout after a resume.
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    drop_last, steps_per_epoch = train_batches(len(sampler), cfg.batch_size)
    return Loaders(
        train=batch_loader(train_set, sampler=sampler, drop_last=drop_last, **loader_kw),
        val=batch_loader(val_set, sampler=val_sampler, **loader_kw),
        sampler=sampler,
        augment=augment,
        val_set=val_set,
        steps_per_epoch=steps_per_epoch,
    )


def build_state(job: Job, proc: Process, steps_per_epoch: int) -> TrainState:
    """The model (seeded with ``train.seed``; under DDP and compiled as configured), the loss,
    the optimiser (train.optimizer), the learning-rate schedule and the gradient scaler."""
    cfg = job.cfg
    torch.manual_seed(cfg.seed)
    raw_model = build_model(
        cfg.arch,
        cfg.encoder,
        len(job.classes),
        encoder_weights=cfg.encoder_weights,
        decoder_dropout=cfg.decoder_dropout,
        encoder_depth=cfg.encoder_depth,
        decoder_channels=cfg.decoder_channels,
        weights_cache=job.weights_cache,
    ).to(proc.device)
    if proc.channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss, class_weights=cfg.class_weights, ignore_index=job.ignore_index)
    loss_fn = loss_fn.to(proc.device)
    optimizer = build_optimizer(
        cfg.optimizer,
        raw_model.parameters(),
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
    )
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler(proc.device.type, enabled=proc.amp == torch.float16)
    model = raw_model
    if proc.distributed:
        model = torch.nn.parallel.DistributedDataParallel(
            raw_model,
            device_ids=[proc.device.index] if proc.device.type == "cuda" else None,
            # A shallower encoder keeps smp's unused deeper stages, which get no gradient.
            find_unused_parameters=cfg.encoder_depth < 5,
        )
    if cfg.compile:
        # compiling a Module gives an OptimizedModule; torch types it as a plain callable
        model = torch.compile(model)  # type: ignore[assignment]
    return TrainState(
        model=model,
        raw_model=raw_model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
    )


def open_watchers(state: TrainState, job: Job, proc: Process) -> TrainingMonitor:
    """The loggers of ``train.log_to``, continuing after the resume state, whose history is
    written as the live history; on ranks other than 0, a monitor that logs nothing."""
    if not proc.is_main:
        return TrainingMonitor()
    write_live_history(job.resume_dir, state.history)
    return open_monitor(
        job.cfg.log_to,
        job.resume_dir.parent,
        start_epoch=state.epoch,
        history=state.history,
        images_every=job.cfg.log_images_every,
    )


def start_epoch(state: TrainState, epoch: int, seed: int) -> EpochProgress:
    """Seed ``epoch`` (dropout etc.; samples and augmentations are seeded per sample) and say
    where it starts: at its beginning, or where a stopped run left it (that run's RNG state)."""
    torch.manual_seed(seed * 100_003 + epoch)
    done, state.partial = state.partial, None
    if done is None or done.epoch != epoch:
        return EpochProgress(epoch)
    assert done.rng is not None  # saved with every partial epoch
    torch.set_rng_state(done.rng.cpu())  # the checkpoint was loaded onto the training device
    return done


def run_epoch(
    epoch: int, state: TrainState, loaders: Loaders, job: Job, proc: Process, stop: StopRequest
) -> EpochResult:
    """Train ``epoch`` (the rest of it, after a stop); on a stop signal, :func:`interrupt`."""
    done = start_epoch(state, epoch, job.cfg.seed)
    # Summed on the device: reading the loss back every step would make the host wait for the
    # GPU at each step.
    loss_total = torch.tensor(done.loss_sum, dtype=torch.float64, device=proc.device)
    loaders.sampler.set_epoch(epoch, skip=done.steps * job.cfg.batch_size)
    state.model.train()
    t0 = time.perf_counter()
    batches: Iterable[Any] = loaders.train
    if proc.is_main:
        batches = progress(batches, desc=f"epoch {epoch}/{job.cfg.epochs}", logger=logger)
    for batch in batches:
        images, masks = prepare_batch(batch, proc.device, proc.channels_last, loaders.augment)
        loss = train_step(
            state.model,
            state.loss_fn,
            state.optimizer,
            state.scaler,
            images,
            masks,
            proc.device,
            proc.amp,
        )
        state.scheduler.step()
        done.steps += 1
        loss_total += loss.double() * len(images)
        done.seen += len(images)
        if stop.agreed(proc.device, done.steps):
            done.loss_sum, done.rng = loss_total.item(), torch.get_rng_state()
            done.elapsed += time.perf_counter() - t0
            interrupt(state, done, job, proc, stop.signum)
    ended = time.perf_counter()
    stats = torch.stack(
        [loss_total, torch.tensor(done.seen, dtype=torch.float64, device=proc.device)]
    )
    if proc.distributed:
        dist.all_reduce(stats)
    return EpochResult(
        loss=(stats[0] / stats[1].clamp(min=1)).item(),
        images=stats[1].item(),
        seconds=done.elapsed + ended - t0,
        ended=ended,
    )


def interrupt(
    state: TrainState, done: EpochProgress, job: Job, proc: Process, signum: int | None
) -> NoReturn:
    """Checkpoint the epoch so far (rank 0), leave the process group, raise
    :class:`TrainingInterrupted`."""
    if proc.is_main:
        save_checkpoint(job.resume_last, state.checkpoint(job, done))
        logger.warning(
            "signal %s: saved a resumable checkpoint at epoch %d step %d in %s; rerun the rule to resume",
            signum,
            done.epoch,
            done.steps,
            job.resume_last,
        )
    if proc.distributed:
        dist.barrier()
        dist.destroy_process_group()
    raise TrainingInterrupted()


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
    padded=False,
) -> dict[str, Any]:
    """Validation loss and confusion-matrix metrics, summed over all data-parallel ranks.
    ``padded``: the samples are images kept at a scale, padded to the split's largest; the
    padding is filled as prediction fills it (:func:`prepare_batch`'s ``padding_label``)."""
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * n, n
    label = ignore_index if padded else None
    for batch in loader:
        prepared = prepare_batch(batch, device, channels_last, padding_label=label)
        images, masks = pad_to_multiple(*prepared, ignore_index)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        sums[0] += loss_fn(logits, masks).double() * len(images)
        sums[1] += len(images)
        cm += confusion_matrix(class_ids(logits, 1), masks, num_classes, ignore_index)
    if dist.is_initialized():
        dist.all_reduce(cm)
        dist.all_reduce(sums)
    cm = cm.cpu()
    return {
        "loss": (sums[0] / sums[1].clamp(min=1)).item(),
        **summarize(cm),
        "per_class": per_class_scores(cm),
    }


def record_epoch(
    state: TrainState, epoch: int, trained: EpochResult, val: dict[str, Any]
) -> dict[str, float]:
    """Add ``epoch``'s history row and count the epoch done; it becomes the best epoch when
    its validation mIoU improves (the first epoch always does)."""
    row = {
        "epoch": epoch,
        "train_loss": trained.loss,
        "val_loss": val["loss"],
        "val_miou": val["mean_iou"],
        "val_dice": val["mean_dice"],
        "lr": state.optimizer.param_groups[0]["lr"],
        "seconds": trained.seconds + time.perf_counter() - trained.ended,
        "images_per_s": trained.images / trained.seconds if trained.seconds else float("nan"),
    }
    state.history.append(row)
    score = val["mean_iou"] if not math.isnan(val["mean_iou"]) else -1.0
    if score > state.best_score or state.best_epoch == 0:
        state.best_score, state.best_epoch = score, epoch
    state.epoch = epoch
    return row


def report_epoch(
    monitor: TrainingMonitor,
    state: TrainState,
    row: dict[str, float],
    val: dict[str, Any],
    job: Job,
    proc: Process,
    val_set: ArrayDataset,
) -> None:
    """Log the epoch's row; give it, the per-class IoU and, when due, prediction previews to
    the loggers."""
    epoch = int(row["epoch"])
    logger.info(
        "epoch %d/%d train_loss %.4f val_loss %.4f val_mIoU %.4f val_Dice %.4f lr %.2e %.1f s (%.1f img/s)",
        epoch,
        job.cfg.epochs,
        *(row[k] for k in HISTORY_COLUMNS[1:]),
    )
    images = None
    if monitor.wants_images(epoch, job.cfg.epochs):
        images = preview_predictions(
            state.raw_model,
            val_set,
            PREVIEW_SAMPLES,
            len(job.classes),
            job.ignore_index,
            proc.device,
            amp=proc.amp,
            channels_last=proc.channels_last,
            padded=job.cfg.model_input.keeps_aspect,
        )
    per_class_iou = dict(zip(job.classes, val["per_class"]["iou"], strict=True))
    monitor.log_epoch(epoch, row, per_class_iou, images)


def save_epoch(state: TrainState, job: Job) -> None:
    """Checkpoint the epoch just done: ``last.pt``, ``best.pt`` when it is the best epoch, and
    the live history."""
    ckpt = state.checkpoint(job)
    if state.best_epoch == state.epoch:
        save_checkpoint(job.resume_best, ckpt)
    save_checkpoint(job.resume_last, ckpt)
    write_live_history(job.resume_dir, state.history)


def publish_outputs(state: TrainState, job: Job, rank_samples: list[Any] | None) -> None:
    """Publish the resume state as the rule outputs (hard links, each an atomic rename) and
    write the history and the model card (:func:`write_model_card`, given ``model_path``);
    ``rank_samples`` (data-parallel runs) goes into ``last.pt`` first."""
    if rank_samples is not None:
        final = load_checkpoint(job.resume_last)
        final["rank_samples"] = rank_samples
        save_checkpoint(job.resume_last, final)
    publish(job.resume_best, job.best_path)
    publish(job.resume_last, job.last_path)
    write_csv(job.history_path, pd.DataFrame(state.history, columns=HISTORY_COLUMNS))
    if job.model_path is not None:
        write_model_card(job.model_path, state.raw_model, job.cfg)
    logger.info("best val mIoU %.4f at epoch %d", state.best_score, state.best_epoch)


# ----------------------------------------------------------------------------- helpers


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


def write_model_card(path: str | Path, model: torch.nn.Module, cfg: TrainConfig) -> None:
    """``model.json``: architecture, encoder and parameter counts of the model trained."""
    params = list(model.parameters())
    write_json(
        path,
        {
            "arch": cfg.arch,
            "encoder": cfg.encoder,
            "parameters": sum(p.numel() for p in params),
            "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
        },
    )


def train_step(model, loss_fn, opt, scaler, images, masks, device, amp):
    """One optimisation step on a prepared batch (:func:`prepare_batch`); returns the loss."""
    with autocast(device, amp):
        logits = model(images)
    loss = loss_fn(logits.float(), masks)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.detach()


def write_live_history(resume_dir: str | Path, history: list[dict[str, Any]]) -> None:
    """``resume_dir/history.csv``: the epochs of the resume state, same columns as history.csv."""
    write_csv(Path(resume_dir) / LIVE_HISTORY, pd.DataFrame(history, columns=HISTORY_COLUMNS))
