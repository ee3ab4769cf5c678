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

from conftest import TINY_MODEL

CONFIG = {
    "classes": ["background", "cat", "dog"],
    "train": {**TINY_MODEL, "decoder_dropout": 0.0},
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
