"""The model-name catalogue (segpipe.models.names): read from smp once, cached, checked without
torch; a corrupt or unwritable cache costs only a rebuild."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from segpipe.models import names as model_names
from segpipe.models.build import ARCHITECTURES

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
    assert names["shape_options"]["Unet"] == ["encoder_depth", "decoder_channels"]
    assert names["shape_options"]["Linknet"] == ["encoder_depth"]


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
