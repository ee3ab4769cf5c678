"""Training: one function, readable top to bottom.

Every epoch is seeded from (seed, epoch), so a run resumed at an epoch boundary replays exactly
the batches, augmentations and dropout of an uninterrupted run. ``resume_dir`` holds ``last.pt``
(written after every epoch) and ``best.pt`` (written when validation mIoU improves), atomically;
it is not a rule output, so Snakemake does not delete it before a rerun, and the next run of the
rule continues from it when the training config and the data manifests are unchanged.

Checkpoints (best, last, resume) share one format: model, optimizer, scheduler, epoch, best
score, the resolved config and the history so far.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader

from segpipe.data import SegmentationDataset, build_augment, read_manifest
from segpipe.io import atomic_path, write_csv
from segpipe.logs import progress
from segpipe.metrics import confusion_matrix, per_class_scores, summarize
from segpipe.models import build_loss, build_model

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


@dataclass
class TrainConfig:
    """The ``train`` section of the config (see config/schema.yaml for each option)."""

    arch: str = "Unet"
    encoder: str = "resnet34"
    encoder_weights: str | None = None
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
    seed: int = 0
    device: str = "auto"
    num_workers: int | None = None
    augment: dict[str, float] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config option 'train.device' is 'cuda' but no CUDA device is visible")
    return torch.device(name)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temp file, then rename: a kill never leaves a truncated checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def publish(src: str | Path, dst: str | Path) -> None:
    """Make ``dst`` a hard link to ``src`` (a copy across file systems), atomically."""
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise RuntimeError(f"{path}: not a readable segpipe checkpoint ({exc})") from exc


def model_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the model a checkpoint was trained with and load its weights (no download)."""
    cfg = ckpt["config"]
    train = cfg["train"]
    model = build_model(
        train["arch"],
        train["encoder"],
        len(cfg["classes"]),
        encoder_weights=None,
        decoder_dropout=train["decoder_dropout"],
    )
    model.load_state_dict(ckpt["model"])
    return model


def _file_digest(*paths: str | Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


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
        progress_ = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return torch.optim.lr_scheduler.LambdaLR(opt, cosine)


@torch.no_grad()
def validate(model, loader, loss_fn, num_classes: int, ignore_index: int, device) -> dict[str, Any]:
    """Validation loss and the confusion-matrix metrics (mean IoU, mean Dice, per class)."""
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    loss_sum, n = 0.0, 0
    for images, masks in loader:
        images, masks = images.to(device), masks.to(device)
        logits = model(images)
        loss_sum += loss_fn(logits, masks).item() * len(images)
        n += len(images)
        cm += confusion_matrix(logits.argmax(1), masks, num_classes, ignore_index)
    cm = cm.cpu()
    return {"loss": loss_sum / max(n, 1), **summarize(cm), "per_class": per_class_scores(cm)}


def train_model(
    train_csv: str | Path,
    val_csv: str | Path,
    *,
    best_path: str | Path,
    last_path: str | Path,
    history_path: str | Path,
    resume_dir: str | Path,
    classes: list[str],
    ignore_index: int = 255,
    threads: int = 1,
    **options: Any,
) -> dict[str, Any]:
    """Train a segmentation model on the train manifest, select the best epoch by val mean IoU.

    ``options`` are the fields of :class:`TrainConfig`. Writes the best and last checkpoints, the
    per-epoch history CSV; keeps its resumable state in ``resume_dir``.
    Returns the final checkpoint dict.
    """
    cfg = TrainConfig(**options)
    num_classes = len(classes)
    resolved = {
        "train": dataclasses.asdict(cfg),
        "classes": list(classes),
        "ignore_index": ignore_index,
    }
    data_digest = _file_digest(train_csv, val_csv)
    device = resolve_device(cfg.device)
    torch.set_num_threads(threads)
    workers = cfg.num_workers if cfg.num_workers is not None else min(8, max(0, threads - 1))
    logger.info(
        "training %s-%s on %s, %d threads, %d loader workers",
        cfg.arch,
        cfg.encoder,
        device,
        threads,
        workers,
    )

    # Data
    augment = build_augment(**cfg.augment, ignore_index=ignore_index)
    train_set = SegmentationDataset(read_manifest(train_csv), cfg.image_size, augment=augment)
    val_set = SegmentationDataset(read_manifest(val_csv), cfg.image_size)
    generator = torch.Generator()
    loader_kw = dict(
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(train_set) > cfg.batch_size,
        generator=generator,
        **loader_kw,
    )
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, **loader_kw)

    # Model, loss, optimiser, schedule
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.arch,
        cfg.encoder,
        num_classes,
        encoder_weights=cfg.encoder_weights,
        decoder_dropout=cfg.decoder_dropout,
    ).to(device)
    loss_fn = build_loss(cfg.loss, class_weights=cfg.class_weights, ignore_index=ignore_index).to(
        device
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _make_scheduler(opt, cfg, len(train_loader))

    # Resume when the same config and data were interrupted before
    start_epoch, best_score, best_epoch, history = 1, -1.0, 0, []
    resume_last, resume_best = Path(resume_dir) / "last.pt", Path(resume_dir) / "best.pt"
    if resume_last.exists() and resume_best.exists():
        state = load_checkpoint(resume_last, map_location=device)
        if state.get("config") == resolved and state.get("data_digest") == data_digest:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start_epoch = state["epoch"] + 1
            best_score, best_epoch, history = (
                state["best_score"],
                state["best_epoch"],
                state["history"],
            )
            logger.info("resuming from %s after epoch %d", resume_last, state["epoch"])
        else:
            logger.warning("ignoring %s: it was written for another config or data", resume_dir)

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": epoch,
            "best_score": best_score,
            "best_epoch": best_epoch,
            "config": resolved,
            "history": history,
            "data_digest": data_digest,
        }

    for epoch in range(start_epoch, cfg.epochs + 1):
        # Seed per epoch so that resuming replays the same randomness as a straight run.
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        generator.manual_seed(cfg.seed * 100_003 + epoch)
        model.train()
        t0 = time.perf_counter()
        loss_sum, seen = 0.0, 0
        for images, masks in progress(
            train_loader, desc=f"epoch {epoch}/{cfg.epochs}", logger=logger
        ):
            images, masks = (
                images.to(device, non_blocking=True),
                masks.to(device, non_blocking=True),
            )
            loss = loss_fn(model(images), masks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(images)
            seen += len(images)
        train_seconds = time.perf_counter() - t0
        val = validate(model, val_loader, loss_fn, num_classes, ignore_index, device)
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / max(seen, 1),
            "val_loss": val["loss"],
            "val_miou": val["mean_iou"],
            "val_dice": val["mean_dice"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
            "images_per_s": seen / train_seconds if train_seconds else float("nan"),
        }
        history.append(row)
        logger.info(
            "epoch %d/%d train_loss %.4f val_loss %.4f val_mIoU %.4f val_Dice %.4f lr %.2e "
            "%.1f s (%.1f img/s)",
            epoch,
            cfg.epochs,
            *(row[k] for k in HISTORY_COLUMNS[1:]),
        )
        score = val["mean_iou"] if not math.isnan(val["mean_iou"]) else -1.0
        state = None
        if score > best_score or best_epoch == 0:
            best_score, best_epoch = score, epoch
            state = checkpoint(epoch)
            save_checkpoint(resume_best, state)
        save_checkpoint(resume_last, state or checkpoint(epoch))

    # Publish the resume state as the rule outputs. A hard link costs no space and is safe: the
    # resume files are only ever replaced by rename, never rewritten in place.
    for src, dst in ((resume_best, best_path), (resume_last, last_path)):
        publish(src, dst)
    write_csv(history_path, pd.DataFrame(history, columns=HISTORY_COLUMNS))
    logger.info("best val mIoU %.4f at epoch %d", best_score, best_epoch)
    return load_checkpoint(last_path)
