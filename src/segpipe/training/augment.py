"""Batched augmentation: a whole batch at once, on the device the batch is on.

The loader hands over batches of raw uint8 samples and one seed per sample (see
:mod:`segpipe.data.arrays`); :class:`BatchAugment` draws each sample's random parameters from its own
seed and applies them to the whole batch with a few tensor operations (kornia's batched affine
warp and colour functions, each sample with its own parameters). On a GPU this costs next to
nothing; on the CPU it costs one pass over the batch instead of a Python call chain per sample.

A sample's augmentation depends on its seed alone: not on the batch it lands in, the number of
loader workers or the global random state. Each option reads its own fixed slot of the sample's
draws, so turning one option on does not change what another does.

Image and mask move together; the mask is resampled with nearest neighbour and pixels moved in
from outside the image become ``ignore_index``, so they never count in loss or metrics. Colour
jitter touches the image only, with torchvision's conventions (multiplicative brightness,
contrast around the mean grey, saturation towards grey), applied in that order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_saturation_with_gray_subtraction,
)
from kornia.geometry.transform import get_affine_matrix2d, warp_affine

from segpipe.data.arrays import sample_extents, take_windows

# Slots in each sample's uniform draws.
HFLIP, VFLIP, ANGLE, SHIFT_X, SHIFT_Y, SCALE, SHEAR, BRIGHTNESS, CONTRAST, SATURATION = range(10)
CROP_Y, CROP_X = 10, 11
DRAWS = 12


def sample_draws(seeds: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, DRAWS) uniform [0, 1) numbers, row i from ``seeds[i]`` alone.

    Drawn on the CPU; on a GPU they travel from pinned memory without making the host wait.
    """
    draws = torch.stack(
        [torch.rand(DRAWS, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
    )
    if torch.device(device).type == "cuda":
        draws = draws.pin_memory().to(device, non_blocking=True)
    return draws.to(device)


def _symmetric(u: torch.Tensor, limit: float) -> torch.Tensor:
    """Map uniform [0, 1) to uniform [-limit, limit)."""
    return (2 * u - 1) * limit


class BatchAugment:
    """Random crops, flips, affine warp and colour jitter for (B, 3, H, W) images and (B, H, W)
    masks.

    Options are those of ``train.augment`` in the config: probabilities for the flips, maximum
    rotation and shear in degrees, maximum shift as a fraction of the size, zoom ``1 ± scale``,
    and colour jitter strength; ``crop`` (``train.image_size`` when ``train.resize`` is
    ``keep_aspect``) cuts a random ``crop`` x ``crop`` window out of each sample first, within
    the sample's own extent (images smaller than that are padded with their edge pixels, the
    padding ignored). Call with uint8 images and masks and the
    per-sample seeds; images come back uint8 when only crops and flips are on, else float in
    [0, 1].
    """

    def __init__(
        self,
        *,
        hflip: float = 0.0,
        vflip: float = 0.0,
        rotate: float = 0.0,
        translate: float = 0.0,
        scale: float = 0.0,
        shear: float = 0.0,
        color_jitter: float = 0.0,
        ignore_index: int = 255,
        crop: int | None = None,
    ):
        self.crop = crop
        self.hflip, self.vflip = hflip, vflip
        self.rotate, self.translate, self.scale, self.shear = rotate, translate, scale, shear
        self.color_jitter = color_jitter
        self.ignore_index = ignore_index

    @property
    def geometric(self) -> bool:
        return bool(self.rotate or self.translate or self.scale or self.shear)

    def __bool__(self) -> bool:
        return bool(self.crop or self.hflip or self.vflip or self.geometric or self.color_jitter)

    def __repr__(self) -> str:
        opts = ("crop", "hflip", "vflip", "rotate", "translate", "scale", "shear", "color_jitter")
        return f"BatchAugment({', '.join(f'{k}={getattr(self, k)}' for k in opts)})"

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self:
            return images, masks
        u = sample_draws(seeds, images.device)
        if self.crop:
            images, masks = self._crop(images, masks, u, self.crop)
        images, masks = self._flip(images, masks, u)
        if not (self.geometric or self.color_jitter):
            return images, masks
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        if self.geometric:
            x, masks = self._affine(x, masks, u)
        if self.color_jitter:
            x = self._color(x, u)
        return x, masks

    def _crop(self, images, masks, u, size: int):
        """Each sample's ``size`` x ``size`` window, drawn within the sample's own extent (not
        the padding that makes its array as large as the split's largest,
        :func:`sample_extents`); a sample smaller than the window gets its edge pixels
        replicated, as prediction pads, and the padding's mask ``ignore_index``."""
        heights, widths = sample_extents(images, masks, self.ignore_index)
        tops = (u[:, CROP_Y] * (heights - size + 1).clamp(min=1)).long()
        lefts = (u[:, CROP_X] * (widths - size + 1).clamp(min=1)).long()
        steps = torch.arange(size, device=images.device)
        rows, cols = tops[:, None] + steps, lefts[:, None] + steps
        outside = (rows >= heights[:, None])[:, :, None] | (cols >= widths[:, None])[:, None, :]
        rows = torch.minimum(rows, heights[:, None] - 1)
        cols = torch.minimum(cols, widths[:, None] - 1)
        images, masks = take_windows(images, rows, cols), take_windows(masks, rows, cols)
        return images, masks.masked_fill(outside, self.ignore_index)

    def _flip(self, images, masks, u):
        for p, slot, dim in ((self.hflip, HFLIP, -1), (self.vflip, VFLIP, -2)):
            if p:
                flip = u[:, slot] < p
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(dim), images)
                masks = torch.where(flip.view(-1, 1, 1), masks.flip(dim), masks)
        return images, masks

    def _affine(self, x, masks, u):
        # Built from the draws and Python numbers only: no host-to-device copies.
        batch, _, height, width = x.shape
        zoom = 1 + _symmetric(u[:, SCALE], self.scale)
        shift = _symmetric(u[:, SHIFT_X : SHIFT_Y + 1], self.translate)
        shift[:, 0] *= width
        shift[:, 1] *= height
        center = torch.empty_like(shift)
        center[:, 0], center[:, 1] = width / 2 - 0.5, height / 2 - 0.5
        matrix = get_affine_matrix2d(
            translations=shift,
            center=center,
            scale=zoom[:, None].expand(batch, 2),
            angle=_symmetric(u[:, ANGLE], self.rotate),
            sx=_symmetric(u[:, SHEAR], self.shear) * (math.pi / 180),
            sy=torch.zeros(batch, dtype=x.dtype, device=x.device),
        )[:, :2]
        x = warp_affine(x, matrix, (height, width), mode="bilinear", align_corners=False)
        # Shift class ids by one so the zero padding marks pixels that came from outside.
        moved = warp_affine(
            masks[:, None].to(x.dtype) + 1, matrix, (height, width), mode="nearest",
            align_corners=False,
        )[:, 0]  # fmt: skip
        masks = torch.where(moved == 0, self.ignore_index, moved - 1).to(masks.dtype)
        return x, masks

    def _color(self, x, u):
        j = self.color_jitter
        factor = {
            k: (1 + _symmetric(u[:, k], j)).clamp(min=0) for k in (BRIGHTNESS, CONTRAST, SATURATION)
        }
        x = adjust_brightness_accumulative(x, factor[BRIGHTNESS])
        x = adjust_contrast_with_mean_subtraction(x, factor[CONTRAST])
        return adjust_saturation_with_gray_subtraction(x, factor[SATURATION])
