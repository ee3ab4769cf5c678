"""Multi-process (DDP, gloo) training, SIGTERM mid-epoch + resume, and extending epochs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from segpipe.inference.predict_splits import predict_split
from segpipe.training.stop_signals import EXIT_INTERRUPTED
from segpipe.training.train import train_model

from helpers.arrays import CLASSES, OPTIONS, make_array


@pytest.fixture(scope="module")
def arrays(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arrays")
    return {
        "train": make_array(root / "train.npy", 22, 0),
        "val": make_array(root / "val.npy", 6, 1),
    }


def outputs(root: Path) -> dict[str, Path]:
    return {
        "best_path": root / "best.pt",
        "last_path": root / "last.pt",
        "history_path": root / "history.csv",
        "resume_dir": root / "resume",
    }


def run(arrays, root: Path, **overrides) -> dict:
    opts = {**OPTIONS, **overrides}
    return train_model(
        arrays["train"], arrays["val"], classes=CLASSES, threads=1, **outputs(root), **opts
    )


@pytest.fixture(scope="module")
def reference(arrays, tmp_path_factory) -> dict:
    return run(arrays, tmp_path_factory.mktemp("reference"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_and_resume_matches_uninterrupted(arrays, reference, tmp_path):
    """A real SIGTERM to a training process in epoch 2: it checkpoints mid-epoch and exits 143;
    the rerun resumes there and ends with exactly the weights of an uninterrupted run."""
    out = outputs(tmp_path)
    script = (
        "import sys, time, segpipe.models.device as r, segpipe.training.train as t\n"
        "orig = r.normalize\n"
        "def slow(*a, **k):\n"
        "    time.sleep(0.3)\n"
        "    return orig(*a, **k)\n"
        "r.normalize = slow\n"
        "from segpipe.logs import setup_logging\n"
        f"setup_logging({str(tmp_path / 'log.txt')!r})\n"
        f"t.train_model({str(arrays['train'])!r}, {str(arrays['val'])!r}, classes={CLASSES!r}, "
        f"threads=1, **{ {k: str(v) for k, v in out.items()}!r}, **{OPTIONS!r})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    log = tmp_path / "log.txt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "epoch 1/3 train_loss" not in (
        log.read_text() if log.exists() else ""
    ):
        time.sleep(0.1)
    time.sleep(1.0)  # a few steps into epoch 2 (each step sleeps 0.3 s)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_INTERRUPTED
    state = torch.load(out["resume_dir"] / "last.pt", weights_only=False)
    assert state["epoch"] == 1 and state["partial"]["epoch"] == 2 and state["partial"]["steps"] >= 1
    assert not out["best_path"].exists() and not out["last_path"].exists()
    assert "saved a resumable checkpoint at epoch 2" in log.read_text()

    final = run(arrays, tmp_path)
    assert same_weights(final["model"], reference["model"])
    assert len(pd.read_csv(out["history_path"])) == 3


def test_resume_can_extend_the_number_of_epochs(arrays, tmp_path, caplog):
    run(arrays, tmp_path, epochs=2)
    caplog.set_level("INFO", logger="segpipe.training")
    final = run(arrays, tmp_path, epochs=4)
    assert "extending training from 2 to 4 epochs" in caplog.text
    assert "epoch 1/4" not in caplog.text and "epoch 3/4 train_loss" in caplog.text
    assert final["epoch"] == 4
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [1, 2, 3, 4]


def test_ddp_two_gloo_processes(arrays, tmp_path):
    """gpus: 2 on the CPU trains with 2 gloo processes on disjoint data; predict loads the result."""
    final = run(arrays, tmp_path, gpus=2, epochs=2)
    ranks = final["rank_samples"]
    assert len(ranks) == 2 and len(ranks[0]) == len(ranks[1]) == 11
    assert not set(ranks[0]) & set(ranks[1])
    assert set(ranks[0]) | set(ranks[1]) == set(range(22))
    assert final["config"]["train"]["gpus"] == 2
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history["epoch"]) == [1, 2] and history["val_miou"].notna().all()

    # The same checkpoint format: the predict step loads it.
    images = tmp_path / "img"
    images.mkdir()
    arr = np.load(arrays["val"])
    rows = []
    for i, sample in enumerate(arr):
        Image.fromarray(sample[..., :3]).save(images / f"v{i}.png")
        rows.append(
            {
                "id": f"v{i}",
                "image": str(images / f"v{i}.png"),
                "mask": "",
                "group": "",
                "height": 32,
                "width": 32,
            }
        )
    pd.DataFrame(rows).to_csv(tmp_path / "val.csv", index=False)
    predict_split(tmp_path / "best.pt", tmp_path / "val.csv", arrays["val"], tmp_path / "pred")
    assert len(list((tmp_path / "pred" / "masks").glob("*.png"))) == len(arr)
    assert json.dumps(final["config"]["classes"]) == json.dumps(CLASSES)
