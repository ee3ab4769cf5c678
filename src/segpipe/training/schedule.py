"""The learning-rate schedules of ``train.scheduler`` (:data:`SCHEDULERS`), stepped every batch
and planned for :attr:`segpipe.training.train_job.TrainConfig.schedule_length` epochs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from segpipe.training.train_job import TrainConfig


def _cosine(opt, cfg: TrainConfig, steps_per_epoch: int):
    """Linear warm-up over ``train.warmup_epochs``, then cosine decay to 0 at the last step of
    the schedule (:attr:`TrainConfig.schedule_length` epochs)."""
    total = cfg.schedule_length * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    return torch.optim.lr_scheduler.LambdaLR(opt, cosine)


def _onecycle(opt, cfg: TrainConfig, steps_per_epoch: int):
    """One cycle up to ``train.lr`` and down again over the whole schedule
    (:attr:`TrainConfig.schedule_length` epochs)."""
    total = cfg.schedule_length * steps_per_epoch
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total)


def _constant(opt, cfg: TrainConfig, steps_per_epoch: int):
    """``train.lr`` throughout."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


# The learning-rate schedules of config option ``train.scheduler``, by name.
SCHEDULERS = {"cosine": _cosine, "onecycle": _onecycle, "constant": _constant}


def make_scheduler(opt, cfg: TrainConfig, steps_per_epoch: int):
    """The schedule ``train.scheduler`` names (:data:`SCHEDULERS`), stepped every batch."""
    return SCHEDULERS[cfg.scheduler](opt, cfg, steps_per_epoch)
