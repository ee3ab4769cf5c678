"""Model and loss registries keyed by the names users write in config.

Unknown names fail with the list of valid choices, as segmentation-models-pytorch does
(:func:`check_model_names`, from :mod:`segpipe.models.names`, which checks them without torch).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import cast

import segmentation_models_pytorch as smp
import torch
from torch import nn

from segpipe.models.names import check_model_names
from segpipe.models.pretrained import WeightsUnavailableError, offline_cache
from segpipe.network import unreachable_reason

logger = logging.getLogger(__name__)

ARCHITECTURES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()
}


def _weights_hint(encoder: str, weights: str) -> str:
    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}).get(weights)
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    if settings is None:
        return f"pre-download the timm weights for '{encoder}' into the Hugging Face cache {cache}"
    repo, rev = settings["repo_id"], settings["revision"]
    return (
        f"on a machine with network run `hf download {repo} --revision {rev}` (or "
        f'`python -c "from huggingface_hub import snapshot_download; '
        f"snapshot_download('{repo}', revision='{rev}')\"`), then copy the cache folder {cache} "
        "to this machine (or point HF_HOME at it); or set train.encoder_weights: null"
    )


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers (they need 2 or more samples per batch to train)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@functools.cache
def needs_two_per_batch(
    arch: str,
    encoder: str,
    num_classes: int,
    encoder_depth: int = 5,
    decoder_channels: tuple[int, ...] | None = None,
) -> bool:
    """Whether a model of these options has BatchNorm, which fails on a training batch of one
    sample ("Expected more than 1 value per channel"): built without weights to find out, once
    per process and options."""
    model = build_model(
        arch,
        encoder,
        num_classes,
        encoder_depth=encoder_depth,
        decoder_channels=None if decoder_channels is None else list(decoder_channels),
    )
    return has_batchnorm(model)


def build_model(
    arch: str,
    encoder: str,
    num_classes: int,
    *,
    encoder_weights: str | None = None,
    in_channels: int = 3,
    decoder_dropout: float = 0.0,
    encoder_depth: int = 5,
    decoder_channels: list[int] | None = None,
    weights_cache: str | os.PathLike | None = None,
) -> nn.Module:
    """Create an smp model; fail fast with a clear message when pretrained weights are missing.

    ``encoder_depth`` and ``decoder_channels`` (e.g. 3 and [64, 32, 16] for a mini UNet) are
    passed to architectures that take them; smp's defaults otherwise. With ``weights_cache``
    (the folder :func:`segpipe.models.pretrained.fetch_weights` filled), pretrained weights come
    from it alone, offline; without it, from the hub or the user's Hugging Face cache.
    """
    check_model_names(arch, encoder, encoder_weights)
    kwargs = dict(encoder_name=encoder, in_channels=in_channels, classes=num_classes)
    kwargs.update(_shape_options(arch, encoder_depth, decoder_channels))
    if encoder_weights is None:
        model = ARCHITECTURES[arch](encoder_weights=None, **kwargs)
    elif weights_cache is not None:
        with offline_cache(weights_cache, encoder, encoder_weights):
            model = ARCHITECTURES[arch](encoder_weights=encoder_weights, **kwargs)
    else:
        model = _with_pretrained(ARCHITECTURES[arch], encoder, encoder_weights, kwargs)
    if decoder_dropout > 0:
        model.segmentation_head = nn.Sequential(
            nn.Dropout2d(decoder_dropout), cast(nn.Module, model.segmentation_head)
        )
    return model


def _shape_options(arch: str, encoder_depth: int, decoder_channels: list[int] | None) -> dict:
    """encoder_depth/decoder_channels for smp, checked against what ``arch`` accepts."""
    accepted = inspect.signature(ARCHITECTURES[arch]).parameters
    options: dict[str, int | list[int]] = {}
    if encoder_depth != 5:
        if "encoder_depth" not in accepted:
            raise ValueError(f"config option 'train.encoder_depth': {arch} has a fixed depth")
        options["encoder_depth"] = encoder_depth
    if decoder_channels is not None:
        if "decoder_channels" not in accepted:
            raise ValueError(f"config option 'train.decoder_channels': {arch} does not take it")
        if (
            isinstance(accepted["decoder_channels"].default, list | tuple)
            and len(decoder_channels) != encoder_depth
        ):
            raise ValueError(
                f"config option 'train.decoder_channels': {len(decoder_channels)} stages for "
                f"encoder_depth {encoder_depth}"
            )
        options["decoder_channels"] = list(decoder_channels)
    return options


def _with_pretrained(cls, encoder: str, weights: str, kwargs: dict) -> nn.Module:
    """Build with hub weights; with the hub unreachable, use the local cache only (no retries)."""
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE
    reason = None if offline else unreachable_reason(constants.ENDPOINT)
    if reason:
        logger.warning("Hugging Face hub unreachable (%s): using the local cache only", reason)
        constants.HF_HUB_OFFLINE = True
    try:
        return cls(encoder_weights=weights, **kwargs)
    except Exception as exc:  # hub/network errors come in many types
        raise WeightsUnavailableError(
            f"cannot load '{weights}' weights for encoder '{encoder}' "
            f"({type(exc).__name__}: {exc}). No network or HF_HUB_OFFLINE=1 with an empty cache? "
            + _weights_hint(encoder, weights)
        ) from exc
    finally:
        constants.HF_HUB_OFFLINE = offline


class _CEDice(nn.Module):
    def __init__(self, ce: nn.Module, dice: nn.Module):
        super().__init__()
        self.ce, self.dice = ce, dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target) + self.dice(logits, target)


def _ce(weight: torch.Tensor | None, ignore_index: int) -> nn.Module:
    return nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)


def _dice(weight: torch.Tensor | None, ignore_index: int) -> nn.Module:
    return smp.losses.DiceLoss(mode="multiclass", ignore_index=ignore_index)


def _ce_dice(weight: torch.Tensor | None, ignore_index: int) -> nn.Module:
    return _CEDice(_ce(weight, ignore_index), _dice(weight, ignore_index))


def _focal(weight: torch.Tensor | None, ignore_index: int) -> nn.Module:
    return smp.losses.FocalLoss(mode="multiclass", ignore_index=ignore_index)


LOSSES: dict[str, Callable[[torch.Tensor | None, int], nn.Module]] = {
    "ce": _ce,
    "dice": _dice,
    "ce+dice": _ce_dice,
    "focal": _focal,
}
"""train.loss name -> builder of the loss from (class weights or None, ignore_index). The class
weights weigh the cross-entropy term only."""


def build_loss(
    name: str, *, class_weights: list[float] | None = None, ignore_index: int = 255
) -> nn.Module:
    """Loss by config name (:data:`LOSSES`; all multiclass, ignoring ``ignore_index``)."""
    if name not in LOSSES:
        raise ValueError(f"config option 'train.loss': unknown '{name}'; valid: {list(LOSSES)}")
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
    return LOSSES[name](weight, ignore_index)
