"""Model and loss registries (segpipe.models.build): shapes, clear errors for unknown names,
offline pretrained weights."""

from __future__ import annotations

import math
import os
import time

import pytest
import torch
from torch import nn

from segpipe.models.build import WeightsUnavailableError, build_loss, build_model

IGNORE = 255


@pytest.mark.parametrize("arch", ["Unet", "FPN"])
def test_forward_shape(arch):
    torch.manual_seed(0)
    model = build_model(arch, "resnet18", 3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3, 64, 64)
    assert torch.isfinite(out).all()


def test_decoder_dropout_wraps_the_head():
    plain = build_model("Unet", "resnet18", 4)
    assert not any(isinstance(m, nn.Dropout2d) for m in plain.modules())
    model = build_model("Unet", "resnet18", 4, decoder_dropout=0.3)
    head = model.segmentation_head
    assert isinstance(head, nn.Sequential)
    assert isinstance(head[0], nn.Dropout2d)
    assert head[0].p == 0.3
    # The original head (its conv to 4 classes) follows the dropout.
    convs = [m for m in head[1].modules() if isinstance(m, nn.Conv2d)]
    assert convs and convs[-1].out_channels == 4
    # Dropout is active in training mode only.
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model(x), model(x))
        model.eval()
        assert torch.equal(model(x), model(x))


def test_unknown_arch_lists_valid_names():
    with pytest.raises(ValueError, match="train.arch") as info:
        build_model("UNet3000", "resnet18", 3)
    msg = str(info.value)
    assert "'UNet3000'" in msg
    assert "'Unet'" in msg and "'FPN'" in msg


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError, match="train.encoder") as info:
        build_model("Unet", "resnet19", 3)
    msg = str(info.value)
    assert "'resnet19'" in msg
    assert "'resnet18'" in msg and "'resnet34'" in msg


def test_unknown_encoder_weights_lists_valid_names():
    with pytest.raises(ValueError, match="train.encoder_weights") as info:
        build_model("Unet", "resnet18", 3, encoder_weights="instagram")
    assert "'imagenet'" in str(info.value)


def random_batch(num_classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, 8, 8, generator=g, requires_grad=True)
    target = torch.randint(0, num_classes, (2, 8, 8), generator=g)
    target[:, :2] = IGNORE  # two ignored rows per image
    return logits, target


@pytest.mark.parametrize("name", ["ce", "dice", "ce+dice", "focal"])
def test_losses_are_finite_with_ignored_pixels(name):
    logits, target = random_batch()
    loss = build_loss(name, ignore_index=IGNORE)(logits, target)
    assert loss.ndim == 0
    assert math.isfinite(loss.item())
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # Ignored pixels get no gradient.
    assert torch.all(logits.grad[:, :, :2] == 0)


@pytest.mark.parametrize("name", ["ce", "dice", "ce+dice", "focal"])
def test_losses_ignore_the_ignored_pixels(name):
    logits, target = random_batch()
    loss_fn = build_loss(name, ignore_index=IGNORE)
    changed = logits.detach().clone()
    changed[:, :, :2] = torch.randn(2, 3, 2, 8) * 10  # only where the target is ignored
    assert loss_fn(changed, target).item() == pytest.approx(loss_fn(logits, target).item())


def test_ce_dice_is_the_sum_of_its_parts():
    logits, target = random_batch()
    total = build_loss("ce+dice", ignore_index=IGNORE)(logits, target).item()
    ce = build_loss("ce", ignore_index=IGNORE)(logits, target).item()
    dice = build_loss("dice", ignore_index=IGNORE)(logits, target).item()
    assert total == pytest.approx(ce + dice)


def test_class_weights_change_the_ce_value():
    logits, target = random_batch()
    plain = build_loss("ce", ignore_index=IGNORE)(logits, target).item()
    weighted = build_loss("ce", class_weights=[1.0, 5.0, 0.1], ignore_index=IGNORE)(
        logits, target
    ).item()
    assert weighted != pytest.approx(plain)
    # Equal weights are the unweighted (weighted-mean) loss.
    equal = build_loss("ce", class_weights=[2.0, 2.0, 2.0], ignore_index=IGNORE)(
        logits, target
    ).item()
    assert equal == pytest.approx(plain)


def test_unknown_loss_lists_valid_names():
    with pytest.raises(ValueError, match="train.loss") as info:
        build_loss("bce")
    assert "'ce+dice'" in str(info.value)


def test_pretrained_weights_offline_fail_fast_with_instructions(tmp_path, monkeypatch):
    from huggingface_hub import constants

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by conftest
    # An empty cache, whatever the machine running the tests has downloaded.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("Unet", "resnet18", 3, encoder_weights="imagenet")
    elapsed = time.monotonic() - start
    assert elapsed < 15, f"took {elapsed:.1f} s to fail"
    msg = str(info.value)
    assert "smp-hub/resnet18.imagenet" in msg  # the hub repo to fetch
    assert "hf download" in msg  # how to fetch it
    assert "encoder_weights: null" in msg  # or how to do without
    # The global offline flag is restored afterwards.
    assert constants.HF_HUB_OFFLINE is True
