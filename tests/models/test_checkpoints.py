"""Checkpoints: written atomically, read or refused by name, published as a link or a copy, and
their models rebuilt without a download, alone or as an ensemble of the same classes."""

from __future__ import annotations

import os

import pytest
import torch

from segpipe.models.checkpoints import (
    load_checkpoint,
    load_models,
    model_from_checkpoint,
    model_from_config,
    publish,
    save_checkpoint,
)

CONFIG = {
    "classes": ["background", "cat", "dog"],
    "train": {"arch": "Unet", "encoder": "resnet18", "decoder_dropout": 0.0, "encoder_depth": 3}
    | {"decoder_channels": [16, 8, 4]},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = model_from_config(CONFIG)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, {"config": CONFIG, "model": model.state_dict(), "epoch": 3})
    return path, model


def test_a_saved_checkpoint_rebuilds_the_same_model(checkpoint) -> None:
    path, model = checkpoint
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temporary left
    ckpt = load_checkpoint(path)
    assert ckpt["epoch"] == 3
    rebuilt = model_from_checkpoint(ckpt).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model.eval()(x))


def test_the_rebuilt_model_holds_no_tensor_on_the_meta_device(checkpoint) -> None:
    """Built on the meta device, it takes every weight and buffer from the checkpoint."""
    rebuilt = model_from_checkpoint(load_checkpoint(checkpoint[0]))
    tensors = [*rebuilt.parameters(), *rebuilt.buffers()]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    assert all(p.requires_grad for p in rebuilt.parameters())


class WithScale(torch.nn.Module):
    """A model that keeps a tensor the checkpoint does not hold (a non-persistent buffer, or a
    plain attribute): only initialising it as usual gives it a value."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        if how == "buffer":
            self.register_buffer("scale", torch.full((1,), 2.0), persistent=False)
        else:
            self.scale = torch.full((1,), 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


@pytest.mark.parametrize("how", ["buffer", "attribute", "fails on meta"])
def test_a_model_the_meta_device_cannot_build_is_built_as_usual(monkeypatch, how) -> None:
    def build(cfg):
        if how == "fails on meta" and torch.get_default_device().type == "meta":
            raise RuntimeError("Tensor.item() cannot be called on meta tensors")
        return WithScale("buffer" if how == "fails on meta" else how)

    monkeypatch.setattr("segpipe.models.checkpoints.model_from_config", build)
    torch.manual_seed(0)
    trained = WithScale("buffer" if how == "fails on meta" else how)
    rebuilt = model_from_checkpoint({"config": CONFIG, "model": trained.state_dict()})
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(rebuilt(x), trained(x))


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04truncated"])
def test_an_unreadable_checkpoint_is_named(tmp_path, content) -> None:
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match="best.pt: not a readable segpipe checkpoint"):
        load_checkpoint(path)


def test_publish_links_or_copies_atomically(checkpoint, tmp_path, monkeypatch) -> None:
    path, _ = checkpoint
    linked = tmp_path / "train" / "best.pt"
    linked.parent.mkdir()
    publish(path, linked)
    assert os.path.samefile(path, linked)

    def no_links(*args):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    copied = tmp_path / "copied.pt"
    publish(path, copied)
    assert not os.path.samefile(path, copied) and copied.read_bytes() == path.read_bytes()
    publish(path, copied)  # an existing output is replaced, not appended to
    assert copied.read_bytes() == path.read_bytes()


def test_an_ensemble_refuses_models_of_other_classes(checkpoint, tmp_path) -> None:
    path, _ = checkpoint
    models, config = load_models([path, path], torch.device("cpu"), channels_last=False)
    assert len(models) == 2 and config == CONFIG and not models[0].training
    other = tmp_path / "other.pt"
    config = {**CONFIG, "classes": ["background", "cat"]}
    save_checkpoint(other, {"config": config, "model": model_from_config(config).state_dict()})
    with pytest.raises(ValueError, match=r"other.pt: classes \['background', 'cat'\] differ"):
        load_models([path, other], torch.device("cpu"), channels_last=False)
