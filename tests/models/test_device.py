"""What training and prediction share on the device: the device and autocast settings, ImageNet
normalisation of uint8 and float images, and padding to what an encoder's downsampling needs."""

from __future__ import annotations

import pytest
import torch

from segpipe.models.device import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DeviceError,
    amp_dtype,
    autocast,
    normalize,
    pad_to_multiple,
    resolve_device,
)

CPU = torch.device("cpu")


def test_the_device_setting() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == (torch.device("cuda", 0) if torch.cuda.is_available() else CPU)
    if not torch.cuda.is_available():
        # A UserError: the train or predict job's log has the message, no traceback.
        with pytest.raises(DeviceError, match="'train.device' is 'cuda' but no CUDA device"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    "setting, expected",
    [("off", None), ("auto", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)],
)
def test_autocast_dtype_on_the_cpu(setting, expected) -> None:
    assert amp_dtype(setting, CPU) is expected


def test_autocast_off_keeps_full_precision() -> None:
    layer = torch.nn.Linear(4, 4)
    with autocast(CPU, None):
        assert layer(torch.rand(2, 4)).dtype == torch.float32
    with autocast(CPU, torch.bfloat16):
        assert layer(torch.rand(2, 4)).dtype == torch.bfloat16


@pytest.mark.parametrize("channels_last", [False, True])
def test_uint8_and_float_images_normalise_alike(channels_last) -> None:
    images = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expected = (images.float() / 255 - mean) / std
    from_uint8 = normalize(images, channels_last)
    from_float = normalize(images.float() / 255, channels_last)
    assert from_uint8.dtype == torch.float32
    torch.testing.assert_close(from_uint8, expected)
    torch.testing.assert_close(from_float, expected)
    assert from_uint8.is_contiguous(memory_format=torch.channels_last) is channels_last
    float_images = images.float() / 255
    normalize(float_images, channels_last)
    assert float_images.max() <= 1.0  # the input is left as it was


@pytest.mark.parametrize(
    "size, padded", [((32, 64), (32, 64)), ((33, 40), (64, 64)), ((1, 1), (32, 32))]
)
def test_padding_to_a_multiple_of_32(size, padded) -> None:
    images = torch.rand(1, 3, *size)
    masks = torch.zeros(1, *size, dtype=torch.long)
    out_images, out_masks = pad_to_multiple(images, masks, ignore_index=255)
    assert tuple(out_images.shape[-2:]) == padded and tuple(out_masks.shape[-2:]) == padded
    height, width = size
    assert torch.equal(out_images[..., :height, :width], images)
    # the padding repeats the bottom row and the right column, as every padding for a model
    assert (out_images[..., height:, :width] == images[..., height - 1 :, :]).all()
    assert (out_images[..., :, width:] == out_images[..., :, width - 1 : width]).all()
    assert (out_masks[..., height:, :] == 255).all() and (out_masks[..., :, width:] == 255).all()
    assert (out_masks[..., :height, :width] == 0).all()
