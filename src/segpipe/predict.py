"""Batched prediction: class-id PNG masks at each image's original size, plus colour overlays."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segpipe.arrays import ArrayDataset, batch_loader
from segpipe.colors import overlay
from segpipe.data import load_rgb, read_manifest
from segpipe.io import atomic_dir
from segpipe.logs import progress
from segpipe.train import (
    amp_dtype,
    load_checkpoint,
    model_from_checkpoint,
    prepare_batch,
    resolve_device,
)

logger = logging.getLogger(__name__)


@torch.no_grad()
def predict_split(
    checkpoint: str | Path,
    manifest_csv: str | Path,
    array_path: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    threads: int = 1,
    device: str = "auto",
    amp: str = "auto",
    overlay_alpha: float = 0.5,
) -> None:
    """Predict every image of a split into ``out_dir/masks/<id>.png`` (uint8 class ids, original
    size) and ``out_dir/overlays/<id>.jpg``; ``out_dir`` appears atomically when complete.

    Inputs come from the split's preprocessed array (training size, same data path as training);
    the logits are resized back to each image's own size (bilinear) before the argmax.
    """
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    num_classes = len(cfg["classes"])
    model = model_from_checkpoint(ckpt).to(dev).eval()
    channels_last = dev.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    autocast = amp_dtype(amp, dev)
    rows = read_manifest(manifest_csv).to_dict("records")
    dataset = ArrayDataset(array_path)
    if len(dataset) != len(rows):
        raise ValueError(
            f"{array_path} holds {len(dataset)} samples but {manifest_csv} lists {len(rows)}"
        )
    loader = batch_loader(
        dataset,
        batch_size=batch_size,
        workers=min(4, max(0, threads - 1)),
        pin_memory=dev.type == "cuda",
    )
    with atomic_dir(out_dir) as tmp:
        (tmp / "masks").mkdir()
        (tmp / "overlays").mkdir()
        start = 0
        for batch in progress(loader, desc=f"predict {Path(manifest_csv).stem}", logger=logger):
            x, _ = prepare_batch(batch, dev, channels_last)
            with torch.autocast(
                dev.type, dtype=autocast or torch.float32, enabled=autocast is not None
            ):
                logits = model(x)
            for one, row in zip(logits.float(), rows[start : start + len(x)], strict=True):
                size = (int(row["height"]), int(row["width"]))
                full = F.interpolate(one[None], size=size, mode="bilinear", align_corners=False)
                mask = full[0].argmax(0).to(torch.uint8).cpu().numpy()
                Image.fromarray(mask, mode="L").save(tmp / "masks" / f"{row['id']}.png")
                rgb = np.asarray(load_rgb(row["image"]))
                Image.fromarray(overlay(rgb, mask, num_classes, overlay_alpha)).save(
                    tmp / "overlays" / f"{row['id']}.jpg", quality=90
                )
            start += len(x)
    logger.info("wrote %d predictions to %s", len(rows), out_dir)
