"""Checkpoints: written atomically, read or refused by name, published as a link or a copy, and
their models rebuilt without a download, alone or as an ensemble of the same classes."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import torch

from segpipe.io import WriteError
from segpipe.models import checkpoints
from segpipe.models.checkpoints import (
    LEDGER,
    changed_since_saved,
    copy_checkpoint,
    load_checkpoint,
    load_models,
    model_from_checkpoint,
    model_from_config,
    publish,
    save_checkpoint,
)

from helpers.filesystems import failing_open, remount_read_only, tmpfs
from helpers.repo import TINY_MODEL

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
    # No temporary left; the digest recorded beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt", LEDGER]
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


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content", [b"", b"not a checkpoint", b"PK\x03\x04truncated", _png()], ids=str
)
def test_an_unreadable_checkpoint_is_named_in_one_line(tmp_path, content) -> None:
    # An image's bytes make torch's unpickler explain itself over two lines.
    path = tmp_path / "best.pt"
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match="best.pt: not a readable segpipe checkpoint") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


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


def test_a_checkpoint_changed_in_place_is_told_from_one_segpipe_saved(tmp_path) -> None:
    """A published checkpoint is a hard link of the resume state's: a file copied over it
    writes through. The ledger of digests tells it; a new save or an atomic copy does not
    count as a change, and a folder without a ledger (an older segpipe's) is trusted."""
    resume, train = tmp_path / "resume", tmp_path / "train"
    train.mkdir()
    save_checkpoint(resume / "best.pt", {"epoch": 1})
    publish(resume / "best.pt", train / "best.pt")
    assert changed_since_saved(resume / "best.pt") is None
    save_checkpoint(resume / "best.pt", {"epoch": 2})  # replaced by rename: the link is broken
    assert changed_since_saved(resume / "best.pt") is None
    publish(resume / "best.pt", train / "best.pt")
    torch.save({"epoch": 9, "foreign": True}, tmp_path / "foreign.pt")
    shutil.copyfile(tmp_path / "foreign.pt", train / "best.pt")  # in place, as cp does
    assert load_checkpoint(resume / "best.pt")["epoch"] == 9  # the hard link wrote through
    reason = changed_since_saved(resume / "best.pt")
    assert reason is not None and str(resume / "best.pt") in reason and LEDGER in reason
    copy_checkpoint(tmp_path / "foreign.pt", tmp_path / "rung" / "last.pt")
    assert changed_since_saved(tmp_path / "rung" / "last.pt") is None
    assert changed_since_saved(tmp_path / "foreign.pt") is None  # no ledger: not told


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EROFS, "read-only file system"),
    ],
)
def test_a_refused_checkpoint_write_is_one_line_and_keeps_the_old_file(
    tmp_path, monkeypatch, code, cause
) -> None:
    """torch.save turns a failed write into "[enforce fail at inline_container.cc] unexpected
    pos"; save_checkpoint names the file and the cause, and the previous checkpoint stays."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1})
    before = path.read_bytes()
    monkeypatch.setattr(checkpoints, "open", failing_open(code), raising=False)
    with pytest.raises(WriteError) as caught:
        save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(100_000)})
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {path}: {cause}"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER, "last.pt"]
    assert changed_since_saved(path) is None


def test_a_full_disk_is_one_line_not_torchs_assertion(tmp_path) -> None:
    """On a real file system that fills up (a small tmpfs), not an injected error."""
    with tmpfs(tmp_path / "disk", "128k") as disk:
        path = disk / "resume" / "last.pt"
        save_checkpoint(path, {"epoch": 1})
        before = path.read_bytes()
        with pytest.raises(WriteError, match=f"cannot write {path}: no space left on the device"):
            save_checkpoint(path, {"epoch": 2, "weights": torch.zeros(100_000)})
        assert path.read_bytes() == before
        assert sorted(p.name for p in path.parent.iterdir()) == [LEDGER, "last.pt"]
        remount_read_only(disk)
        with pytest.raises(WriteError, match=f"cannot write {path}: read-only file system"):
            save_checkpoint(path, {"epoch": 2})
        assert path.read_bytes() == before
