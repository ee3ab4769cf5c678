"""Watching training while it runs: TensorBoard and DVCLive behind one small interface.

``train.log_to`` (config/schema.yaml) names the loggers; the training loop opens them on rank 0
with :func:`open_monitor` and calls :meth:`TrainingMonitor.log_epoch` after every epoch, before
that epoch's checkpoint is saved. Each logger writes one directory next to the training outputs
(``results/runs/<run>/train/tensorboard/``, ``.../dvclive/``), so ``tensorboard --logdir results/``
(every run) and ``dvc plots show results/runs/<run>/train/dvclive/plots/metrics`` read a running
job's files.

Resume: the loggers continue at the checkpoint's epoch ``k``. What they logged after it (an
epoch logged, then killed before its checkpoint was saved) is discarded: TensorBoard by
``purge_step=k + 1``, DVCLive by cutting its metric tables and images to the steps up to ``k``.
A fresh training run (epoch 0) starts with empty directories. A logger switched on for a run
that already has epochs (a resume) first writes the scalars of those epochs from the history.

Neither logger's package is imported unless the config names it.
"""

from __future__ import annotations

import csv
import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from segpipe.io import atomic_path
from segpipe.logs import UserError

logger = logging.getLogger(__name__)

LOGGERS = ("tensorboard", "dvclive")
# history.csv column -> scalar name (TensorBoard groups the charts by the part before "/").
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "val_miou": "val/miou",
    "val_dice": "val/dice",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
}
IMAGES = "val_predictions"  # image panels: image | true mask | predicted mask


class EpochLogger(Protocol):
    """What a logger does: record one finished epoch, and flush and close at the end."""

    def log_epoch(
        self,
        epoch: int,
        row: Mapping[str, float],
        per_class_iou: Mapping[str, float] | None,
        images: Sequence[np.ndarray] | None,
    ) -> None: ...

    def close(self) -> None: ...


def class_tag(index: int, name: str) -> str:
    """The scalar name of one class's validation IoU: index first (unique, in class order), the
    name made safe as a file name (DVCLive writes one file per scalar)."""
    return f"val_iou/{index}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"


def scalars(
    row: Mapping[str, float], per_class_iou: Mapping[str, float] | None
) -> dict[str, float]:
    """Scalar name -> value of one epoch: the history columns, then one IoU per class."""
    out = {tag: float(row[column]) for column, tag in SCALARS.items() if column in row}
    for i, (name, iou) in enumerate((per_class_iou or {}).items()):
        out[class_tag(i, name)] = float(iou)
    return out


def _missing(package: str, option: str) -> UserError:
    return UserError(
        f"config option 'train.log_to' names {option}, but the Python package {package!r} is "
        "not installed (it is pinned in requirements.txt)"
    )


class TensorBoardLogger:
    """Scalars and image panels as TensorBoard events in ``directory``."""

    def __init__(self, directory: str | Path, start_epoch: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise _missing("tensorboard", "tensorboard") from exc
        self.directory = Path(directory)
        if start_epoch == 0:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.had_data = any(self.directory.glob("events.out.tfevents.*"))
        # purge_step: readers drop the events an earlier writer logged from that step on.
        self.writer = SummaryWriter(
            str(self.directory), purge_step=start_epoch + 1 if start_epoch else None
        )

    def log_epoch(self, epoch, row, per_class_iou, images) -> None:
        for tag, value in scalars(row, per_class_iou).items():
            self.writer.add_scalar(tag, value, epoch)
        for i, image in enumerate(images or ()):
            self.writer.add_image(f"{IMAGES}/{i}", image, epoch, dataformats="HWC")
        self.writer.flush()  # readable now, not after SummaryWriter's two-minute flush

    def close(self) -> None:
        self.writer.close()


class DVCLiveLogger:
    """The same scalars and panels with DVCLive in ``directory``: ``plots/metrics/**.tsv`` (one row
    per epoch, step = epoch), ``plots/images/``, ``metrics.json``. Neither a dvc.yaml (the
    pipeline's is generated from the Snakemake DAG) nor a DVC experiment is written."""

    def __init__(self, directory: str | Path, start_epoch: int):
        try:
            from dvclive import Live
        except ImportError as exc:
            raise _missing("dvclive", "dvclive") from exc
        self.directory = Path(directory)
        if start_epoch == 0:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            truncate_dvclive(self.directory, start_epoch)
        self.had_data = (self.directory / "metrics.json").exists()
        self.live = Live(
            str(self.directory),
            resume=start_epoch > 0,
            save_dvc_exp=False,
            dvcyaml=None,
            report=None,
            monitor_system=False,
        )

    def log_epoch(self, epoch, row, per_class_iou, images) -> None:
        self.live.step = epoch
        for tag, value in scalars(row, per_class_iou).items():
            self.live.log_metric(tag, value)
        for i, image in enumerate(images or ()):
            # folder/{step}.png: DVC's VS Code extension and Studio show a slider per sample.
            self.live.log_image(f"{IMAGES}/{i}/{epoch}.png", image)
        self.live.next_step()  # writes metrics.json

    def close(self) -> None:
        self.live.end()


def truncate_dvclive(directory: Path, last_epoch: int) -> None:
    """Drop what DVCLive logged in ``directory`` for steps after ``last_epoch``."""
    for table in sorted((directory / "plots" / "metrics").rglob("*.tsv")):
        with open(table, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        step = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[step]) <= last_epoch]
        if len(kept) < len(rows):
            with atomic_path(table) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
                csv.writer(fh, delimiter="\t", lineterminator="\n").writerows(kept)
    for image in (directory / "plots" / "images" / IMAGES).rglob("*.png"):
        if image.stem.isdigit() and int(image.stem) > last_epoch:
            image.unlink()


@dataclass
class TrainingMonitor:
    """The loggers of one training run (none: every call does nothing).

    ``images_every``: validation prediction panels at epoch 1, every that many epochs and the
    last epoch (0: never).
    """

    loggers: list[EpochLogger] = field(default_factory=list)
    images_every: int = 5

    def wants_images(self, epoch: int, last_epoch: int) -> bool:
        every = self.images_every
        return bool(self.loggers) and every > 0 and (epoch in (1, last_epoch) or epoch % every == 0)

    def log_epoch(
        self,
        epoch: int,
        row: Mapping[str, float],
        per_class_iou: Mapping[str, float] | None = None,
        images: Sequence[np.ndarray] | None = None,
    ) -> None:
        for each in self.loggers:
            each.log_epoch(epoch, row, per_class_iou, images)

    def close(self) -> None:
        for each in self.loggers:
            each.close()


def open_monitor(
    log_to: Sequence[str],
    directory: str | Path,
    *,
    start_epoch: int = 0,
    history: Sequence[Mapping[str, float]] = (),
    images_every: int = 5,
) -> TrainingMonitor:
    """The loggers ``log_to`` names, each in ``directory``/its name, continuing after
    ``start_epoch`` (0: a fresh run). ``history``: the rows of the epochs done, written to a
    logger that has no data yet."""
    unknown = sorted(set(log_to) - set(LOGGERS))
    if unknown:
        raise UserError(f"config option 'train.log_to': unknown logger(s) {unknown}; use {LOGGERS}")
    classes: dict[str, type[TensorBoardLogger | DVCLiveLogger]] = {
        "tensorboard": TensorBoardLogger,
        "dvclive": DVCLiveLogger,
    }
    monitor = TrainingMonitor(images_every=images_every)
    for name in dict.fromkeys(log_to):
        try:
            each = classes[name](Path(directory) / name, start_epoch)
        except BaseException:
            monitor.close()
            raise
        monitor.loggers.append(each)
        if start_epoch and not each.had_data and history:
            logger.info("%s: writing the %d epochs trained so far", name, len(history))
            for row in history:
                each.log_epoch(int(row["epoch"]), row, None, None)
        logger.info("logging training to %s", Path(directory) / name)
    return monitor
