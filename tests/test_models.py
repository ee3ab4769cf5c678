"""Model and loss registries: shapes, clear errors for unknown names, offline pretrained weights,
and the model-name catalogue that lets the DAG check names without importing torch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from segpipe.models import names as model_names
from segpipe.models.build import ARCHITECTURES, WeightsUnavailableError, build_loss, build_model

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


# Model names at DAG time: a catalogue read from smp once, cached, checked without torch.


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty model-name cache directory, and no catalogue memoized in this process."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(model_names.CACHE_ENV, str(directory))
    model_names.load_catalogue.cache_clear()
    yield directory
    model_names.load_catalogue.cache_clear()


@pytest.fixture
def builds(monkeypatch):
    """Count catalogue builds; each reads smp in this process (imported here already)."""
    calls = []

    def build():
        calls.append(1)
        return model_names.names_from_smp()

    monkeypatch.setattr(model_names, "build_catalogue", build)
    return calls


def cached_catalogue():
    """The catalogue as a process without smp gets it, read afresh (nothing memoized)."""
    model_names.load_catalogue.cache_clear()
    return model_names.load_catalogue(model_names.cache_file())


def test_catalogue_holds_smps_names():
    names = model_names.names_from_smp()
    assert names["architectures"] == sorted(ARCHITECTURES)
    assert "imagenet" in names["encoders"]["resnet18"]
    assert "resnet18" in names["timm_models"]


def test_catalogue_is_built_once_then_read_from_the_cache(cache_dir, builds):
    first = cached_catalogue()
    assert len(builds) == 1
    assert model_names.cache_file().parent == cache_dir
    assert json.loads(model_names.cache_file().read_text()) == first
    assert cached_catalogue() == first == model_names.names_from_smp()
    assert len(builds) == 1


def test_another_smp_version_builds_a_new_catalogue(cache_dir, builds, monkeypatch):
    cached_catalogue()
    versions = {**model_names.installed_versions(), "smp": "0.0.1"}
    monkeypatch.setattr(model_names, "installed_versions", lambda: versions)
    cached_catalogue()
    assert len(builds) == 2
    assert len(list(cache_dir.glob("*.json"))) == 2
    assert "smp-0.0.1" in model_names.cache_file().name


@pytest.mark.parametrize(
    "content",
    [b'{"architectures": ["Unet"', b"\xff\xfe\x00", b"[]", b'{"architectures": ["Unet"]}', b""],
    ids=["truncated", "not-utf8", "a-list", "keys-missing", "empty"],
)
def test_a_corrupt_cache_file_is_rebuilt(cache_dir, builds, content, caplog):
    path = model_names.cache_file()
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert cached_catalogue() == model_names.names_from_smp()
    assert len(builds) == 1
    assert "building it again" in caplog.text
    assert json.loads(path.read_text()) == model_names.names_from_smp()


def test_an_unwritable_cache_dir_only_costs_a_rebuild(tmp_path, monkeypatch, builds, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(model_names.CACHE_ENV, str(blocker / "cache"))  # even root cannot mkdir
    assert cached_catalogue() == model_names.names_from_smp()
    assert cached_catalogue() == model_names.names_from_smp()
    assert len(builds) == 2
    assert "cannot cache the model names" in caplog.text


DAG_TIME_CHECK = """
import json, sys
import segpipe.workflow.config
from segpipe.models import names as model_names
if sys.argv[1] == "warm":
    model_names.build_catalogue = lambda: sys.exit("the cache was not used")
model_names.check_model_names("Unet", "resnet18", "imagenet")
model_names.check_model_names("FPN", "tu-resnet18", None)
errors = []
for names in [
    ("UNet3000", "resnet18", None),
    ("Unet", "resnet19", None),
    ("Unet", "resnet18", "instagram"),
    ("Unet", "tu-no_such_model", None),
]:
    try:
        model_names.check_model_names(*names)
    except ValueError as exc:
        errors.append(str(exc))
heavy = ["torch", "segmentation_models_pytorch", "timm", "torchvision"]
print(json.dumps({"imported": [m for m in heavy if m in sys.modules], "errors": errors}))
"""


def check_names_in_a_new_process(cache: str) -> dict:
    """Run DAG_TIME_CHECK in a fresh interpreter with the given cache (warm or cold)."""
    proc = subprocess.run(
        [sys.executable, "-c", DAG_TIME_CHECK, cache],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_names_are_checked_without_torch_from_a_warm_cache(cache_dir, builds):
    cached_catalogue()
    result = check_names_in_a_new_process("warm")
    assert result["imported"] == []
    arch, encoder, weights, timm_model = result["errors"]
    assert arch.startswith("config option 'train.arch': unknown 'UNet3000'")
    assert "'Unet'" in arch and "'FPN'" in arch
    assert encoder.startswith("config option 'train.encoder': unknown 'resnet19'")
    assert "'resnet18'" in encoder and "'resnet34'" in encoder
    assert weights.startswith("config option 'train.encoder_weights': 'instagram'")
    assert "'imagenet'" in weights
    assert "timm has no model 'no_such_model'" in timm_model


@pytest.mark.slow  # the child process imports torch and smp: seconds
def test_a_cold_cache_is_filled_by_a_child_process_without_torch_here(cache_dir):
    result = check_names_in_a_new_process("cold")
    assert result["imported"] == []
    assert len(result["errors"]) == 4
    written = json.loads(model_names.cache_file().read_text())
    assert written == model_names.names_from_smp()
