"""Watching training: the live history, TensorBoard and DVCLive logs, across interruptions.

Tiny runs (a mini UNet on 32 x 32 arrays, a second or two per epoch) log every epoch; each
resume test interrupts a run, reruns it, and checks that every logged series holds each epoch
exactly once.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import segpipe.training.train
from segpipe.logs import UserError
from segpipe.training.monitor import SCALARS, class_tag, open_monitor
from segpipe.training.stop_signals import StopRequest, TrainingInterrupted
from segpipe.training.train import HISTORY_COLUMNS, train_model

from helpers.arrays import make_array
from helpers.repo import TINY_MODEL, TRAIN_DEFAULTS

CLASSES = ["pet", "background", "border/edge"]  # "/" must not make a nested scalar name
OPTIONS = {
    **TRAIN_DEFAULTS,
    **TINY_MODEL,
    **dict(
        epochs=2,
        batch_size=4,
        image_size=32,
        device="cpu",
        num_workers=0,
        augment={"hflip": 0.5},
    ),
}
TAGS = [*SCALARS.values(), *(class_tag(i, name) for i, name in enumerate(CLASSES))]


@pytest.fixture(autouse=True)
def _outside_the_checkout(tmp_path, monkeypatch):
    """DVCLive looks for a DVC repo from the working directory: give it none to touch."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arrays")
    return {
        "train": make_array(root / "train.npy", 8, 0),
        "val": make_array(root / "val.npy", 3, 1),
    }


def run(arrays, root: Path, **overrides) -> dict:
    return train_model(
        arrays["train"],
        arrays["val"],
        best_path=root / "best.pt",
        last_path=root / "last.pt",
        history_path=root / "history.csv",
        resume_dir=root / "resume",
        classes=CLASSES,
        threads=1,
        **{**OPTIONS, **overrides},
    )


def tensorboard_steps(logdir: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Scalar tag -> steps and image tag -> steps, as TensorBoard reads them (purges applied)."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    return (
        {t: [e.step for e in acc.Scalars(t)] for t in tags["scalars"]},
        {t: [e.step for e in acc.Images(t)] for t in tags["images"]},
    )


def dvclive_steps(directory: Path) -> dict[str, list[int]]:
    """Metric name -> the steps of its DVCLive table."""
    out = {}
    for table in (directory / "plots" / "metrics").rglob("*.tsv"):
        with open(table, newline="") as fh:
            name = table.relative_to(directory / "plots" / "metrics").with_suffix("").as_posix()
            out[name] = [int(row["step"]) for row in csv.DictReader(fh, delimiter="\t")]
    return out


def dvclive_image_steps(directory: Path) -> list[int]:
    """The epochs of the first sample's DVCLive prediction images."""
    folder = directory / "plots" / "images" / "val_predictions" / "0"
    return sorted(int(p.stem) for p in folder.glob("*.png"))


def live_history(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "resume" / "history.csv")


def test_both_loggers_record_every_epoch_with_images(arrays, tmp_path):
    dvc_yaml = Path(segpipe.training.train.__file__).parents[3] / "dvc.yaml"
    before = dvc_yaml.read_bytes()
    run(arrays, tmp_path, log_to=["tensorboard", "dvclive"], log_images_every=1)

    history = pd.read_csv(tmp_path / "history.csv")
    pd.testing.assert_frame_equal(live_history(tmp_path), history)
    assert list(history.columns) == HISTORY_COLUMNS

    scalars, images = tensorboard_steps(tmp_path / "tensorboard")
    assert scalars == {tag: [1, 2] for tag in TAGS}
    assert images == {f"val_predictions/{i}": [1, 2] for i in range(3)}

    live = tmp_path / "dvclive"
    assert dvclive_steps(live) == {tag: [1, 2] for tag in TAGS}
    table = pd.read_csv(live / "plots" / "metrics" / "val" / "miou.tsv", sep="\t")
    np.testing.assert_allclose(table["miou"], history["val_miou"])
    assert dvclive_image_steps(live) == [1, 2]
    assert (live / "metrics.json").is_file()
    # No second DAG, no experiment: DVCLive writes neither a dvc.yaml nor into the checkout's.
    assert not list(tmp_path.rglob("dvc.yaml")) and not (tmp_path / ".dvc").exists()
    assert dvc_yaml.read_bytes() == before

    # A panel: image | true mask | predicted mask, 2-pixel gaps.
    from PIL import Image

    with Image.open(live / "plots" / "images" / "val_predictions" / "0" / "2.png") as panel:
        assert panel.size == (3 * 32 + 4, 32) and panel.mode == "RGB"


def test_each_epoch_once_after_interruptions(arrays, tmp_path, monkeypatch):
    """Killed after epoch 2 was logged but before its checkpoint, then stopped by a signal in
    epoch 3, then finished: every series holds epochs 1, 2, 3 exactly once."""
    options = dict(epochs=3, log_to=["tensorboard", "dvclive"], log_images_every=2)
    real_save = segpipe.training.train.save_checkpoint

    def die_saving_epoch_2(path, state):
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # as a kill between logging and checkpointing would
        real_save(path, state)

    monkeypatch.setattr(segpipe.training.train, "save_checkpoint", die_saving_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(arrays, tmp_path, **options)
    # The live history holds what the resume state holds: epoch 1, readable mid-run.
    assert live_history(tmp_path)["epoch"].tolist() == [1]
    assert not (tmp_path / "history.csv").exists()
    assert tensorboard_steps(tmp_path / "tensorboard")[0]["loss/train"] == [1, 2]
    assert dvclive_steps(tmp_path / "dvclive")["loss/train"] == [1, 2]
    monkeypatch.setattr(segpipe.training.train, "save_checkpoint", real_save)

    # Rerun; a SIGTERM-like stop signal at the first step of epoch 3.
    real_agreed = StopRequest.agreed
    steps = []

    def signal_in_epoch_3(self, device, step):
        steps.append(step)
        if len(steps) == 3:  # 2 steps per epoch; this rerun starts at epoch 2
            os.kill(os.getpid(), signal.SIGTERM)
        return real_agreed(self, device, step)

    monkeypatch.setattr(StopRequest, "agreed", signal_in_epoch_3)
    with pytest.raises(TrainingInterrupted):
        run(arrays, tmp_path, **options)
    assert live_history(tmp_path)["epoch"].tolist() == [1, 2]
    monkeypatch.setattr(StopRequest, "agreed", real_agreed)

    run(arrays, tmp_path, **options)
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    pd.testing.assert_frame_equal(live_history(tmp_path), history)
    scalars, images = tensorboard_steps(tmp_path / "tensorboard")
    assert scalars == {tag: [1, 2, 3] for tag in TAGS}
    assert images["val_predictions/0"] == [1, 2, 3]  # epoch 1, every 2nd, the last
    assert dvclive_steps(tmp_path / "dvclive") == {tag: [1, 2, 3] for tag in TAGS}
    assert dvclive_image_steps(tmp_path / "dvclive") == [1, 2, 3]
    # The values of the rerun epoch 2 replace those of the lost one, in both loggers.
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    logged = [e.value for e in acc.Scalars("val/miou")]
    np.testing.assert_allclose(logged, history["val_miou"], rtol=1e-6)


def test_a_logger_switched_on_mid_run_gets_the_epochs_so_far(arrays, tmp_path, caplog):
    run(arrays, tmp_path)
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "dvclive").exists()
    caplog.set_level("INFO", logger="segpipe.training")
    run(arrays, tmp_path, epochs=3, log_to=["tensorboard"])
    # Logging options are not part of the model's config: the resume state was kept.
    assert "resuming from" in caplog.text and "ignoring" not in caplog.text
    scalars, _ = tensorboard_steps(tmp_path / "tensorboard")
    assert scalars["loss/val"] == [1, 2, 3] and scalars[class_tag(0, "pet")] == [3]


def test_a_fresh_run_starts_empty_logs(tmp_path):
    stale = tmp_path / "tensorboard" / "events.out.tfevents.1.old"
    stale.parent.mkdir()
    stale.write_bytes(b"")
    monitor = open_monitor(["tensorboard"], tmp_path, start_epoch=0)
    monitor.close()
    assert not stale.exists()


def test_unknown_logger_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="train.log_to"):
        open_monitor(["wandb"], tmp_path)


def test_images_at_epoch_one_every_nth_and_the_last(tmp_path):
    monitor = open_monitor(["tensorboard"], tmp_path, images_every=3)
    try:
        assert [e for e in range(1, 8) if monitor.wants_images(e, 7)] == [1, 3, 6, 7]
        monitor.images_every = 0
        assert not any(monitor.wants_images(e, 7) for e in range(1, 8))
    finally:
        monitor.close()
    assert not open_monitor([], tmp_path).wants_images(1, 1)


def test_without_log_to_no_logger_package_is_imported(arrays, tmp_path, monkeypatch):
    # None in sys.modules makes an import fail: training must not need the packages.
    for name in ("dvclive", "tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)
    run(arrays, tmp_path, epochs=1)
    assert live_history(tmp_path)["epoch"].tolist() == [1]
    for name, package in [("tensorboard", "tensorboard"), ("dvclive", "dvclive")]:
        with pytest.raises(UserError, match=f"names {name}, but the Python package '{package}'"):
            open_monitor([name], tmp_path)
