"""Checks before any training: what would fail only after the job started, refused first in one
line naming the option (:class:`BatchTooSmallError`)."""

from __future__ import annotations

from segpipe.logs import UserError
from segpipe.models.build import build_model, has_batchnorm
from segpipe.training.train_job import TrainConfig


class BatchTooSmallError(UserError, ValueError):
    """A training batch would hold a single sample, which BatchNorm cannot normalise."""


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
