"""The prediction previews the loggers show (``train.log_images_every``): the first validation
samples, each as the image, its true mask and the predicted mask side by side."""

from __future__ import annotations

import numpy as np
import torch

from segpipe.data.arrays import ArrayDataset
from segpipe.data.colors import colorize
from segpipe.models.argmax import class_ids
from segpipe.models.device import autocast, pad_to_multiple, prepare_batch

PREVIEW_SAMPLES = 4  # validation samples whose predictions the loggers show as images


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
    padded=False,
) -> list[np.ndarray]:
    """The first ``count`` samples of ``dataset`` as RGB uint8 (H, W, 3) panels: the image, the
    true mask and the predicted mask side by side (class colours as in the report); ``padded``
    as :func:`segpipe.training.train.validate` takes it."""
    batch = dataset.__getitems__(list(range(min(count, len(dataset)))))
    raw_images, masks = batch.unpack("cpu")
    label = ignore_index if padded else None
    prepared = prepare_batch(batch, device, channels_last, padding_label=label)
    images, padded_masks = pad_to_multiple(*prepared, 0)
    model.eval()
    with autocast(device, amp):
        logits = model(images)
    height, width = masks.shape[-2:]
    predicted = class_ids(logits.float(), 1)[:, :height, :width].cpu().numpy()
    panels = []
    for image, mask, pred in zip(
        raw_images.permute(0, 2, 3, 1).numpy(), masks.numpy(), predicted, strict=True
    ):
        gap = np.full((image.shape[0], 2, 3), 255, dtype=np.uint8)
        true_rgb = colorize(mask, num_classes, ignore_index)
        pred_rgb = colorize(pred, num_classes, ignore_index)
        panels.append(np.concatenate([image, gap, true_rgb, gap, pred_rgb], axis=1))
    return panels
