"""Pretrained weights fetched into a cache from a fake Hugging Face hub on localhost (the real
download code of smp and huggingface_hub runs), then read offline."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from huggingface_hub import constants

from segpipe import cli
from segpipe.models.build import build_model
from segpipe.models.pretrained import (
    WeightsUnavailableError,
    check_record,
    fetch_weights,
    record_path,
)

from helpers.fake_hub import publish, serve

# A real smp encoder and its published weights' layout, not the tests' tiny model: the weights
# file and its record are what these tests check.
ENCODER, WEIGHTS = "mobilenet_v2", "imagenet"
SETTINGS = smp.encoders.encoders[ENCODER]["pretrained_settings"][WEIGHTS]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The fake hub's files: smp's repository for the encoder's weights, random weights."""
    root = tmp_path_factory.mktemp("hub")
    return root, publish(root, SETTINGS["repo_id"], SETTINGS["revision"], ENCODER)


def _point_hub_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """What HF_ENDPOINT does at huggingface_hub's import, for this process."""
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )


@pytest.fixture
def hub(published, monkeypatch):
    root, state = published
    with serve(root) as (endpoint, requests):
        _point_hub_at(monkeypatch, endpoint)
        yield state, requests


@pytest.fixture
def no_hub(monkeypatch):
    """An endpoint nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _point_hub_at(monkeypatch, f"http://127.0.0.1:{port}")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_fills_the_cache_and_records_the_served_files(hub, published, tmp_path):
    cache = tmp_path / "pretrained"
    record = fetch_weights(ENCODER, WEIGHTS, cache)
    assert record == record_path(cache, ENCODER, WEIGHTS)
    data = json.loads(record.read_text())
    assert (data["encoder"], data["weights"]) == (ENCODER, WEIGHTS)
    assert data["source"] == {"repo_id": SETTINGS["repo_id"], "revision": SETTINGS["revision"]}
    served = published[0] / SETTINGS["repo_id"] / SETTINGS["revision"]
    files = {Path(f["path"]).name: f for f in data["files"]}
    assert sorted(files) == ["config.json", "model.safetensors"]
    for name, entry in files.items():
        assert entry["size"] == (served / name).stat().st_size
        assert entry["sha256"] == _sha256(served / name) == _sha256(cache / entry["path"])
        # The Hugging Face hub cache layout, so that huggingface_hub finds it offline.
        assert entry["path"].startswith("hub/models--smp-hub--mobilenet_v2.imagenet/snapshots/")
    assert data["fetched_at"]
    assert check_record(cache, ENCODER, WEIGHTS) is None


def _filled_cache(tmp_path: Path, published, monkeypatch) -> Path:
    cache = tmp_path / "pretrained"
    with serve(published[0]) as (endpoint, _), monkeypatch.context() as patch:
        _point_hub_at(patch, endpoint)
        fetch_weights(ENCODER, WEIGHTS, cache)
    return cache


def test_a_model_built_offline_has_the_served_weights(published, no_hub, tmp_path, monkeypatch):
    cache = _filled_cache(tmp_path, published, monkeypatch)
    offline = constants.HF_HUB_OFFLINE
    model = build_model("Unet", ENCODER, 2, encoder_weights=WEIGHTS, weights_cache=cache)
    loaded = model.encoder.state_dict()
    assert loaded.keys() == published[1].keys()
    for name, tensor in published[1].items():
        assert torch.equal(loaded[name], tensor), name
    assert constants.HF_HUB_OFFLINE is offline  # offline for the build only


def test_building_from_the_cache_asks_the_hub_nothing(hub, published, tmp_path, monkeypatch):
    state, requests = hub
    cache = tmp_path / "pretrained"
    fetch_weights(ENCODER, WEIGHTS, cache)
    asked = len(requests)
    build_model("Unet", ENCODER, 2, encoder_weights=WEIGHTS, weights_cache=cache)
    assert len(requests) == asked


def test_a_second_fetch_with_the_record_there_does_nothing(hub, tmp_path):
    _, requests = hub
    cache = tmp_path / "pretrained"
    record = fetch_weights(ENCODER, WEIGHTS, cache)
    stamp, asked = record.stat().st_mtime_ns, len(requests)
    assert asked > 0
    assert fetch_weights(ENCODER, WEIGHTS, cache) == record
    assert (len(requests), record.stat().st_mtime_ns) == (asked, stamp)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_no_hub_and_no_cache_says_what_to_run_in_one_line(no_hub, tmp_path):
    cache = tmp_path / "pretrained"
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_weights(ENCODER, WEIGHTS, cache)
    message = _one_line(info)
    assert f"'{WEIGHTS}' weights of encoder '{ENCODER}'" in message
    assert "unreachable" in message
    command = f"segpipe fetch-weights --encoder {ENCODER} --weights {WEIGHTS} --cache {cache}"
    assert command in message
    assert not cache.exists()


def test_a_model_without_the_cache_filled_fails_in_one_line(no_hub, tmp_path):
    cache = tmp_path / "pretrained"
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("Unet", ENCODER, 2, encoder_weights=WEIGHTS, weights_cache=cache)
    message = _one_line(info)
    assert f"'{WEIGHTS}' weights of encoder '{ENCODER}'" in message
    assert "does not exist" in message and "segpipe fetch-weights" in message


def test_a_failed_fetch_leaves_no_record(hub, tmp_path):
    """The hub answers, but has no such repository (404): no record, one line."""
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_weights("resnet18", WEIGHTS, tmp_path / "pretrained")
    assert "'resnet18'" in _one_line(info)
    assert not record_path(tmp_path / "pretrained", "resnet18", WEIGHTS).exists()


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("truncate", "is not the file"),
        ("flip", "is not the file"),
        ("remove", "is missing"),
        ("bad record", "cannot be read"),
        ("empty record", "cannot be read"),
        ("no files", "lists no files"),
    ],
)
def test_a_damaged_cache_fails_in_one_line(
    published, no_hub, tmp_path, monkeypatch, damage, problem
):
    cache = _filled_cache(tmp_path, published, monkeypatch)
    record = record_path(cache, ENCODER, WEIGHTS)
    weights = next(cache.glob("hub/**/model.safetensors")).resolve()
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-10])
    elif damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
    elif damage == "remove":
        weights.unlink()
    elif damage == "bad record":
        record.write_text("{not json")
    elif damage == "empty record":
        record.write_text("")
    else:
        record.write_text(json.dumps({"files": []}))
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("Unet", ENCODER, 2, encoder_weights=WEIGHTS, weights_cache=cache)
    message = _one_line(info)
    assert problem in message and f"encoder '{ENCODER}'" in message


def test_cli_fetch_weights_fills_the_cache(hub, tmp_path, capsys):
    cache = tmp_path / "shared cache"
    argv = ["fetch-weights", "--encoder", ENCODER, "--weights", WEIGHTS, "--cache", str(cache)]
    assert cli.main(argv) == cli.EXIT_OK
    assert str(record_path(cache, ENCODER, WEIGHTS)) in capsys.readouterr().out
    assert check_record(cache, ENCODER, WEIGHTS) is None


def test_cli_fetch_weights_offline_is_one_line(no_hub, tmp_path, capsys):
    argv = ["fetch-weights", "--encoder", ENCODER, "--weights", WEIGHTS, "--cache", str(tmp_path)]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "segpipe fetch-weights: error:" in err and ENCODER in err


def test_cli_fetch_weights_refuses_unknown_names(tmp_path, capsys):
    argv = ["fetch-weights", "--encoder", ENCODER, "--weights", "nope", "--cache", str(tmp_path)]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "'nope'" in err and "imagenet" in err


WEIGHTS_RUNS = """\
train: {encoder: mobilenet_v2, encoder_weights: imagenet, epochs: 1}
experiments:
  a: {train: {lr: 0.01}}
  b: {train: {lr: 0.02}}
"""


@pytest.mark.slow
def test_the_pipeline_fetches_once_and_trains_offline(published, tmp_path, monkeypatch):
    """Two runs share an encoder: one pretrained job (on the fake hub), two train jobs reading
    its cache; a config without weights plans no pretrained job."""
    from helpers.repo import copy_workflow, planned_rules, snakemake

    work = copy_workflow(tmp_path / "work")
    assert "pretrained" not in planned_rules(work, "--configfile", "config/test.yaml")
    (work / "weights.yaml").write_text(WEIGHTS_RUNS, encoding="utf-8")
    args = ["--configfile", "config/test.yaml", "weights.yaml", "--until", "train"]
    with serve(published[0]) as (endpoint, requests):
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        plan = planned_rules(work, *args)
        assert (plan["pretrained"], plan["train"]) == (1, 2)
        proc = snakemake(work, "--cores", "2", *args, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        downloads = [r for r in requests if r.startswith("GET") and "model.safetensors" in r]
        assert len(downloads) == 1
        assert check_record(work / "resources/pretrained", ENCODER, WEIGHTS) is None
        for run in ("a", "b"):
            assert next((work / "results/runs" / run).rglob("best.pt"))
        assert planned_rules(work, *args) == {}  # fetched once: the rule does not run again


def test_cli_fetch_weights_into_a_full_read_only_or_file_cache_is_one_line(hub, tmp_path, capsys):
    """The cache a file: exit 2 before the download; a cache on a disk that fills up or is
    read-only: exit 3, one line naming the file and the cause, and no record."""
    from helpers.filesystems import remount_read_only, tmpfs

    def fetch(cache: Path) -> tuple[int, str]:
        argv = ["fetch-weights", "--encoder", ENCODER, "--weights", WEIGHTS, "--cache", str(cache)]
        code = cli.main(argv)
        return code, capsys.readouterr().err

    (tmp_path / "a file").write_text("mine")
    code, err = fetch(tmp_path / "a file")
    assert code == cli.EXIT_USAGE and "is a file" in err and err.count("\n") == 1
    assert (tmp_path / "a file").read_text() == "mine"
    with tmpfs(tmp_path / "disk", "1m") as disk:
        code, err = fetch(disk / "cache")
        assert code == cli.EXIT_WRITE and err.count("\n") == 1, err
        assert f"cannot write {disk / 'cache'}" in err and "no space left on the device" in err
        assert not record_path(disk / "cache", ENCODER, WEIGHTS).exists()
        remount_read_only(disk)
        code, err = fetch(disk / "other")
        assert code == cli.EXIT_WRITE and "read-only file system" in err and err.count("\n") == 1
