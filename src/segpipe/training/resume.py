"""The resume state: what the epoch loop changes and a checkpoint saves (:class:`TrainState`,
with how far an interrupted epoch got, :class:`EpochProgress`), and whether ``resume_dir``'s
``last.pt`` continues this run (:func:`resumable`, :func:`resume`)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from segpipe.models.checkpoints import changed_since_saved, load_checkpoint
from segpipe.training.distributed import Process
from segpipe.training.train_job import Job

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- state

# Scheduler attributes that hold the schedule's plan rather than how far it got: a one-cycle
# schedule saves its phases, computed from its length, with its step count. A restored schedule
# keeps the plan it was built with, so a longer run stretches it (a LambdaLR saves no plan: its
# step function is built from the config).
SCHEDULE_PLAN = ("total_steps", "_schedule_phases")


@dataclass
class EpochProgress:
    """How far an epoch got: steps, summed loss, images and training seconds so far; ``rng``,
    the torch RNG state where a stop signal interrupted it."""

    epoch: int
    steps: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    elapsed: float = 0.0
    rng: torch.Tensor | None = None


@dataclass
class TrainState:
    """The model and what the epoch loop changes: what a checkpoint saves and restores."""

    model: torch.nn.Module  # what the loop calls: raw_model, under DDP and/or compiled
    raw_model: torch.nn.Module
    loss_fn: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    epoch: int = 0  # epochs done
    best_score: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    partial: EpochProgress | None = None  # how far the next epoch got, when resumed mid-epoch

    def checkpoint(self, job: Job, partial: EpochProgress | None = None) -> dict[str, Any]:
        """The checkpoint after ``epoch``, or ``partial`` way into the next epoch."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.raw_model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "config": job.config,
            "history": self.history,
            "data_digest": job.data_digest,
            "partial": dataclasses.asdict(partial) if partial else None,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from a :meth:`checkpoint` on the schedule this run planned
        (:attr:`TrainConfig.schedule_length` epochs): the checkpoint's own with
        ``train.schedule_epochs``, stretched where ``train.epochs`` grew without it."""
        self.raw_model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        planned = {
            k: getattr(self.scheduler, k) for k in SCHEDULE_PLAN if hasattr(self.scheduler, k)
        }
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scheduler.__dict__.update(planned)
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch = ckpt["epoch"]
        self.best_score = ckpt["best_score"]
        self.best_epoch = ckpt["best_epoch"]
        self.history = ckpt["history"]
        partial = ckpt.get("partial")
        self.partial = EpochProgress(**partial) if partial else None


def resume(state: TrainState, job: Job, proc: Process) -> None:
    """Continue from ``resume_dir/last.pt`` when it was written for this config and data, the
    number of epochs aside (see :func:`resumable`); otherwise start afresh, with a warning
    where there was one. The schedule keeps its planned length with ``train.schedule_epochs``;
    without it, it is stretched to the new number of epochs."""
    saved = resumable(job, proc)
    if saved is not None:
        state.restore(saved)
    if proc.is_main:
        log_start(state, job, None if saved is None else saved["config"]["train"]["epochs"])


# Train options that checkpoints written before the option existed do not record, with the
# value that trains what they trained: such a checkpoint still resumes.
PREDATED_OPTIONS: dict[str, Any] = {"schedule_epochs": None, "momentum": 0.9}


def resumable(job: Job, proc: Process) -> dict[str, Any] | None:
    """``resume_dir/last.pt`` when it records this config (``train.epochs`` aside: it may grow,
    up to ``train.schedule_epochs`` when that is set, which must itself be the same) and data
    and no more epochs than this run trains; None otherwise (a warning where there was one)."""
    if not (job.resume_last.exists() and job.resume_best.exists()):
        return None
    for path in (job.resume_last, job.resume_best):
        if (changed := changed_since_saved(path)) is not None:
            if proc.is_main:
                logger.warning("not resuming: %s; training starts afresh", changed)
            return None
    saved = load_checkpoint(job.resume_last, map_location=proc.device)
    recorded = saved.get("config", {})
    train = {**PREDATED_OPTIONS, **recorded.get("train", {}), "epochs": job.cfg.epochs}
    if (
        {**recorded, "train": train} == job.config
        and saved.get("data_digest") == job.data_digest
        and saved["epoch"] <= job.cfg.epochs
    ):
        return saved
    if proc.is_main:
        logger.warning("ignoring %s: it was written for another config or data", job.resume_dir)
    return None


def log_start(state: TrainState, job: Job, recorded_epochs: int | None) -> None:
    """Say where training starts: the resume state (``recorded_epochs``: the epochs its run
    was set to train; None: a fresh start) and, with ``train.schedule_epochs``, which epochs of
    the planned schedule this run trains."""
    cfg, partial = job.cfg, state.partial
    if recorded_epochs is not None:
        where = (
            f"epoch {partial.epoch} step {partial.steps}"
            if partial
            else f"the end of epoch {state.epoch}"
        )
        logger.info("resuming from %s at %s", job.resume_last, where)
    first = partial.epoch if partial else state.epoch + 1
    if cfg.schedule_epochs is not None and first <= cfg.epochs:
        logger.info(
            "%s epochs %d..%d of a schedule planned for %d",
            "training" if recorded_epochs is None else "continuing",
            first,
            cfg.epochs,
            cfg.schedule_epochs,
        )
    elif recorded_epochs is not None and recorded_epochs != cfg.epochs:
        logger.info("extending training from %d to %d epochs", recorded_epochs, cfg.epochs)
