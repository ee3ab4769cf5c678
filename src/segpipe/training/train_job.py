"""What a training run is given: the ``train`` options (:class:`TrainConfig`) and, the same in
every process, the data, classes and output paths (:class:`Job`), with the config a checkpoint
records."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.data.preprocess import ArrayRows
from segpipe.logs import UserError
from segpipe.models.model_input import ModelInput
from segpipe.params import UNTRACKED_OPTIONS
from segpipe.training.optimizers import unknown_optimizer
from segpipe.training.schedule import SCHEDULERS

# Options that change how fast training runs or how it is watched, not what it computes
# (segpipe.params): not part of the config a checkpoint records, so changing them keeps the
# resume state.
UNRECORDED_OPTIONS = UNTRACKED_OPTIONS["train"]


class ScheduleTooShortError(UserError, ValueError):
    """``train.schedule_epochs`` is fewer than the ``train.epochs`` it must cover."""


@dataclass(kw_only=True)
class TrainConfig:
    """The ``train`` section of the config, every option given: config/schema.yaml documents
    each and holds its default, the one source of them (the validated config's section, or
    :func:`segpipe.workflow.config.section_defaults` for a caller without a config)."""

    arch: str
    encoder: str
    encoder_weights: str | None
    encoder_depth: int
    decoder_channels: list[int] | None
    decoder_dropout: float
    loss: str
    class_weights: list[float] | None
    optimizer: str
    lr: float
    weight_decay: float
    momentum: float  # sgd's
    scheduler: str
    warmup_epochs: float
    epochs: int
    schedule_epochs: int | None  # the learning-rate schedule's length; None: epochs
    batch_size: int
    image_size: int
    resize: str
    image_scale: float
    seed: int
    device: str
    gpus: int
    num_workers: int | None
    amp: str
    channels_last: bool | None
    compile: bool
    augment: dict[str, float]
    log_to: list[str]
    log_images_every: int

    def __post_init__(self) -> None:
        if (problem := unknown_optimizer(self.optimizer)) is not None:
            raise ValueError(problem)
        if self.scheduler not in SCHEDULERS:
            raise ValueError(
                f"config option 'train.scheduler': unknown '{self.scheduler}'; "
                f"valid: {list(SCHEDULERS)}"
            )
        if self.schedule_epochs is not None and self.schedule_epochs < self.epochs:
            raise ScheduleTooShortError(
                f"config option 'train.schedule_epochs': {self.schedule_epochs} is fewer than "
                f"train.epochs ({self.epochs}); the learning-rate schedule must cover every "
                "epoch trained (null: plan it for train.epochs)"
            )

    @property
    def model_input(self) -> ModelInput:
        """The geometry of the images the model is trained on."""
        return ModelInput.from_train(vars(self))

    @property
    def schedule_length(self) -> int:
        """The epochs the learning-rate schedule is planned for: ``schedule_epochs``, or
        ``epochs`` when that is None."""
        return self.epochs if self.schedule_epochs is None else self.schedule_epochs


@dataclass
class Job:
    """What a training run is given, the same in every process: config, data and outputs."""

    cfg: TrainConfig
    train_data: ArrayRows
    val_data: ArrayRows
    classes: list[str]
    ignore_index: int
    threads: int  # for all the processes together
    resume_dir: Path
    best_path: str
    last_path: str
    history_path: str
    data_digest: str  # of the train and val data, computed once rather than once per process
    weights_cache: str | None = None  # pretrained weights read offline from here (pretrained.cache)
    model_path: str | None = None  # model.json, the model card, written with the outputs

    @property
    def resume_last(self) -> Path:
        return self.resume_dir / "last.pt"

    @property
    def resume_best(self) -> Path:
        return self.resume_dir / "best.pt"

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """The config a checkpoint records: the train options (UNRECORDED_OPTIONS aside), the
        classes and ignore_index."""
        train = dataclasses.asdict(self.cfg)
        return {
            "train": {k: v for k, v in train.items() if k not in UNRECORDED_OPTIONS},
            "classes": list(self.classes),
            "ignore_index": self.ignore_index,
        }
