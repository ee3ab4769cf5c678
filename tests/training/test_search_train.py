"""A search's rung for one candidate: started from the previous rung's checkpoints in a folder
of its own, it ends bit for bit as the same config trained straight to the last budget; a
killed rung resumes from its own, newer state."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from segpipe.models.checkpoints import load_checkpoint
from segpipe.training.search_train import train_rung

from helpers.schedule import STATE, assert_same_state
from helpers.train import CLASSES, IGNORE, OPTIONS, tiny_splits
from helpers.train import train as train_straight


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, dict[str, Path]]:
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=4)


def rung(data: dict, folder: Path, previous: list[Path], epochs: int) -> dict[str, Path]:
    """One rung into ``folder`` (its outputs and its own resume folder), as rule search_train
    runs it: the candidate's options, trained to ``epochs`` on a schedule planned for 3."""
    out = {name: folder / name for name in ("best.pt", "last.pt", "history.csv")}
    options = {**OPTIONS, "batch_size": 2, "epochs": epochs, "schedule_epochs": 3}
    train_rung(
        previous,
        folder / "resume",
        train_data=data["train"]["array"],
        val_data=data["val"]["array"],
        best_path=out["best.pt"],
        last_path=out["last.pt"],
        history_path=out["history.csv"],
        classes=CLASSES,
        ignore_index=IGNORE,
        threads=1,
        **options,
    )
    return out


def test_a_promoted_candidate_ends_as_if_trained_straight(data, tmp_path) -> None:
    first = rung(data, tmp_path / "rung0", [], epochs=1)
    second = rung(data, tmp_path / "rung1", [first["last.pt"], first["best.pt"]], epochs=3)
    _, straight = train_straight(
        data, tmp_path / "straight", batch_size=2, epochs=3, schedule_epochs=3
    )
    for name, path in (("best.pt", straight["best_path"]), ("last.pt", straight["last_path"])):
        got, want = load_checkpoint(second[name]), load_checkpoint(path)
        for key in STATE:
            assert_same_state(got[key], want[key], f"{name}:{key}")
    assert pd.read_csv(second["history.csv"])["epoch"].tolist() == [1, 2, 3]
    # The previous rung is left as it was: the next one trained in a copy.
    assert load_checkpoint(first["last.pt"])["epoch"] == 1


def test_a_killed_rung_resumes_from_its_own_newer_state(data, tmp_path, caplog) -> None:
    first = rung(data, tmp_path / "rung0", [], epochs=1)
    previous = [first["last.pt"], first["best.pt"]]
    # The rung's own state, written after the previous rung's (a killed run of this rung that
    # got to epoch 2): kept, not replaced by the previous rung's.
    own = rung(data, tmp_path / "own", previous, epochs=2)
    shutil.copytree(tmp_path / "own" / "resume", tmp_path / "rung1" / "resume")
    for path in (tmp_path / "rung1" / "resume").iterdir():
        os.utime(path)  # newer than the previous rung's files
    caplog.clear()
    caplog.set_level(logging.INFO)
    resumed = rung(data, tmp_path / "rung1", previous, epochs=2)
    assert "starting from" not in caplog.text  # not seeded again from the previous rung
    assert "at the end of epoch 2" in caplog.text
    assert load_checkpoint(resumed["last.pt"])["epoch"] == 2
    assert load_checkpoint(own["last.pt"])["epoch"] == 2
