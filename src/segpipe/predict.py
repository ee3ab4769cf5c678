"""Batched prediction: class-id PNG masks at each image's original size, plus colour overlays."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from segpipe.colors import overlay
from segpipe.data import SegmentationDataset, load_rgb, read_manifest
from segpipe.io import atomic_dir
from segpipe.logs import progress
from segpipe.train import load_checkpoint, model_from_checkpoint, resolve_device

logger = logging.getLogger(__name__)


def _collate(batch):
    images, ids, heights, widths = zip(*batch, strict=True)
    return torch.stack(images), list(ids), list(heights), list(widths)


@torch.no_grad()
def predict_split(
    checkpoint: str | Path,
    manifest_csv: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 8,
    threads: int = 1,
    device: str = "auto",
    overlay_alpha: float = 0.5,
) -> None:
    """Predict every image of a split manifest into ``out_dir/masks/<id>.png`` (uint8 class ids,
    original size) and ``out_dir/overlays/<id>.jpg``. ``out_dir`` appears atomically when done.

    Images are resized to the training size for the forward pass; the logits are resized back to
    each image's own size (bilinear) before the argmax.
    """
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt["config"]
    num_classes = len(cfg["classes"])
    model = model_from_checkpoint(ckpt).to(dev).eval()
    manifest = read_manifest(manifest_csv)
    dataset = SegmentationDataset(manifest, cfg["train"]["image_size"], with_mask=False)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=min(8, max(0, threads - 1)),
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
    )
    paths = dict(zip(manifest["id"], manifest["image"], strict=True))
    with atomic_dir(out_dir) as tmp:
        (tmp / "masks").mkdir()
        (tmp / "overlays").mkdir()
        for images, ids, heights, widths in progress(
            loader, desc=f"predict {Path(manifest_csv).stem}", logger=logger
        ):
            logits = model(images.to(dev, non_blocking=True)).float()
            for one, image_id, h, w in zip(logits, ids, heights, widths, strict=True):
                full = F.interpolate(one[None], size=(h, w), mode="bilinear", align_corners=False)
                mask = full[0].argmax(0).to(torch.uint8).cpu().numpy()
                Image.fromarray(mask, mode="L").save(tmp / "masks" / f"{image_id}.png")
                rgb = np.asarray(load_rgb(paths[image_id]))
                Image.fromarray(overlay(rgb, mask, num_classes, overlay_alpha)).save(
                    tmp / "overlays" / f"{image_id}.jpg", quality=90
                )
    logger.info("wrote %d predictions to %s", len(manifest), out_dir)
