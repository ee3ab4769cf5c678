"""Batched augmentation: image and mask move together, each sample by its own seed alone."""

from __future__ import annotations

import pytest
import torch

from segpipe.training.augment import DRAWS, BatchAugment, sample_draws

IGNORE = 255


def asymmetric_batch(batch: int = 2, size: int = 8):
    """Images and masks whose left and right (and top and bottom) halves differ."""
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    image[0, :, : size // 4] = 255  # red stripe on the left
    image[1, : size // 4, :] = 200  # green stripe on top
    image[2] = torch.arange(size * size, dtype=torch.uint8).reshape(size, size)
    mask = torch.zeros(size, size, dtype=torch.uint8)
    mask[:, : size // 4] = 1
    mask[: size // 4, :] = 2
    return image.repeat(batch, 1, 1, 1), mask.repeat(batch, 1, 1)


def blocks(batch: int, size: int = 48):
    """Masks of 8x8 blocks of classes 0-2, and images whose every channel spells the class."""
    ids = torch.arange(batch * (size // 8) ** 2).reshape(batch, size // 8, size // 8) % 3
    masks = ids.repeat_interleave(8, 1).repeat_interleave(8, 2).to(torch.uint8)
    images = (masks * 100)[:, None].expand(batch, 3, size, size).contiguous()
    return images, masks


def test_no_option_is_a_no_op():
    augment = BatchAugment()
    assert not augment
    images, masks = asymmetric_batch()
    out_images, out_masks = augment(images, masks, [1, 2])
    assert out_images is images and out_masks is masks


def test_hflip_flips_image_and_mask_identically():
    images, masks = asymmetric_batch()
    out_images, out_masks = BatchAugment(hflip=1.0)(images, masks, [1, 2])
    assert out_images.dtype == torch.uint8  # flips alone keep the bytes
    assert torch.equal(out_images, images.flip(-1))
    assert torch.equal(out_masks, masks.flip(-1))
    assert out_masks[0, 0, -1] == 2 and out_masks[0, -1, -1] == 1  # left stripe now on the right


def test_vflip_flips_image_and_mask_identically():
    images, masks = asymmetric_batch()
    out_images, out_masks = BatchAugment(vflip=1.0)(images, masks, [1, 2])
    assert torch.equal(out_images, images.flip(-2))
    assert torch.equal(out_masks, masks.flip(-2))


def test_random_flip_keeps_image_and_mask_together():
    images, masks = asymmetric_batch(40)
    out_images, out_masks = BatchAugment(hflip=0.5)(images, masks, range(40))
    flipped = 0
    for i in range(40):
        if torch.equal(out_images[i], images[i]):
            assert torch.equal(out_masks[i], masks[i])
        else:
            assert torch.equal(out_images[i], images[i].flip(-1))
            assert torch.equal(out_masks[i], masks[i].flip(-1))
            flipped += 1
    assert 5 < flipped < 35  # each sample decides for itself


def test_affine_fills_the_mask_border_with_ignore_index():
    size = 32
    images = torch.full((5, 3, size, size), 180, dtype=torch.uint8)
    masks = torch.ones(5, size, size, dtype=torch.uint8)
    out_images, out_masks = BatchAugment(rotate=60, translate=0.2, ignore_index=IGNORE)(
        images, masks, range(5)
    )
    assert out_images.dtype == torch.float32 and 0 <= out_images.min() <= out_images.max() <= 1
    assert out_masks.dtype == torch.uint8
    for image, mask in zip(out_images, out_masks, strict=True):
        values = set(mask.unique().tolist())
        assert values <= {1, IGNORE}  # nearest neighbour: no blended class ids
        assert IGNORE in values  # the corners moved in from outside
        outside = mask == IGNORE
        assert (image[:, outside] < 0.5).all()  # black there (blended at the very edge)
        assert torch.allclose(image[:, ~outside].max(), torch.tensor(180 / 255))


def test_affine_keeps_image_and_mask_aligned():
    images, masks = blocks(6)
    augment = BatchAugment(rotate=30, translate=0.1, scale=0.2, shear=10, ignore_index=IGNORE)
    out_images, out_masks = augment(images, masks, range(6))
    assert not torch.equal(out_masks, masks)
    inside = out_masks != IGNORE
    # Each kept pixel's class, read back from the bilinear image, agrees with the nearest-
    # neighbour mask except along block edges, where bilinear blends neighbours.
    from_image = (out_images[:, 0] * 255 / 100).round()
    agree = (from_image == out_masks.float()) & inside
    assert agree.sum() / inside.sum() > 0.8


def test_color_jitter_changes_the_image_only():
    images, masks = asymmetric_batch(4, 16)
    out_images, out_masks = BatchAugment(color_jitter=0.8)(images, masks, range(4))
    assert torch.equal(out_masks, masks)
    assert out_images.min() >= 0 and out_images.max() <= 1
    assert not torch.allclose(out_images, images.float() / 255)


def test_each_sample_depends_on_its_seed_alone():
    augment = BatchAugment(hflip=0.5, vflip=0.5, rotate=20, scale=0.1, color_jitter=0.3)
    images, masks = blocks(4)
    rng_before = torch.get_rng_state()
    first = augment(images, masks, [10, 11, 12, 13])
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    torch.manual_seed(99)
    # Sample 2 (seed 12) alone, in another batch position, gives the same result.
    alone = augment(images[[2, 0]], masks[[2, 0]], [12, 99])
    torch.testing.assert_close(alone[0][0], first[0][2])
    assert torch.equal(alone[1][0], first[1][2])
    others = augment(images, masks, [20, 21, 22, 23])
    assert not torch.allclose(others[0], first[0])


def test_options_draw_from_their_own_slots():
    """Turning colour jitter on does not change the flips and warp a sample gets."""
    images, masks = blocks(8)
    geometric = BatchAugment(hflip=0.5, rotate=20)
    jittered = BatchAugment(hflip=0.5, rotate=20, color_jitter=0.5)
    seeds = range(100, 108)
    assert torch.equal(geometric(images, masks, seeds)[1], jittered(images, masks, seeds)[1])


def test_draws_are_uniform_and_stable():
    draws = sample_draws(range(2000))
    assert draws.shape == (2000, DRAWS) and draws.min() >= 0 and draws.max() < 1
    assert abs(draws.mean().item() - 0.5) < 0.02
    assert torch.equal(sample_draws([7, 3])[1], sample_draws([3])[0])


@pytest.mark.cuda
def test_on_the_gpu_matches_the_cpu():
    augment = BatchAugment(hflip=0.5, rotate=20, translate=0.1, color_jitter=0.3)
    images, masks = blocks(4)
    cpu = augment(images, masks, range(4))
    gpu = augment(images.cuda(), masks.cuda(), range(4))
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-3, rtol=0)
    assert (gpu[1].cpu() != cpu[1]).float().mean() < 0.01


def test_random_crops_are_windows_of_each_sample_drawn_from_its_seed():
    images = torch.arange(2 * 3 * 10 * 12, dtype=torch.int32).view(2, 3, 10, 12).to(torch.uint8)
    masks = torch.arange(2 * 10 * 12).view(2, 10, 12) % 7
    augment = BatchAugment(crop=4)
    cropped, cmasks = augment(images, masks, [5, 9])
    assert cropped.shape == (2, 3, 4, 4) and cmasks.shape == (2, 4, 4)
    for i in range(2):  # a window of the sample, the mask's at the same place
        windows = [
            (t, left)
            for t in range(7)
            for left in range(9)
            if torch.equal(images[i, :, t : t + 4, left : left + 4], cropped[i])
        ]
        (t, left), *_ = windows
        assert torch.equal(masks[i, t : t + 4, left : left + 4], cmasks[i])
    again, _ = augment(images[1:], masks[1:], [9])
    assert torch.equal(again[0], cropped[1])  # the seed alone decides
    tops = {tuple(augment(images, masks, [s, s])[0][0, 0, 0, :2].tolist()) for s in range(30)}
    assert len(tops) > 5


def test_a_crop_larger_than_the_sample_pads_with_its_edge_and_ignored_pixels():
    images = torch.arange(15, dtype=torch.uint8).view(1, 1, 3, 5).expand(1, 3, 3, 5) + 1
    masks = torch.zeros(1, 3, 5)
    cropped, cmasks = BatchAugment(crop=6, ignore_index=255)(images, masks.long(), [1])
    assert cropped.shape == (1, 3, 6, 6)
    assert (cmasks[0, 3:] == 255).all() and (cmasks[0, :, 5] == 255).all()
    assert (cmasks[0, :3, :5] == 0).all()
    assert torch.equal(cropped[0, :, :3, :5], images[0])  # the sample, then its edge repeated
    assert torch.equal(cropped[0, :, 3:, :5], images[0, :, 2:3].expand(3, 3, 5))
    assert torch.equal(cropped[0, :, :, 5], cropped[0, :, :, 4])
