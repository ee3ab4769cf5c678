"""train.schedule_epochs: a learning-rate schedule planned for more epochs than one run trains.

A run trained in rungs (epochs 1, then 2, then 4 of a schedule planned for 4, each rung resuming
from the last one's checkpoint, as a successive-halving search does) must end exactly where a
run trained straight to 4 epochs ends: the same weights, optimizer and scheduler state, the same
learning rate at every step, and a history with each epoch once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import torch

import segpipe.training.train
from segpipe.logs import UserError
from segpipe.models.checkpoints import load_checkpoint, save_checkpoint
from segpipe.training.train_job import ScheduleTooShortError

from helpers.repo import TRAIN_DEFAULTS
from helpers.schedule import STATE, assert_same_state
from helpers.train import tiny_splits, train

SCHEDULES = {
    "cosine with warm-up": dict(scheduler="cosine", warmup_epochs=1.5),
    "onecycle": dict(scheduler="onecycle"),
    "constant": dict(scheduler="constant"),
}
HISTORY = ["epoch", "train_loss", "val_loss", "val_miou", "val_dice", "lr"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """4 training images (2 steps per epoch at batch size 2) and 4 validation images."""
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=4)


@pytest.fixture
def step_rates(monkeypatch) -> list[float]:
    """The learning rate of every optimisation step, in order, across train_model calls."""
    rates: list[float] = []
    real_step = segpipe.training.train.train_step

    def recording_step(model, loss_fn, opt, *args, **kwargs):
        rates.append(opt.param_groups[0]["lr"])
        return real_step(model, loss_fn, opt, *args, **kwargs)

    monkeypatch.setattr(segpipe.training.train, "train_step", recording_step)
    return rates


@pytest.mark.parametrize("schedule", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_rungs_resumed_on_one_schedule_end_as_a_straight_run(
    data, tmp_path, step_rates, caplog, schedule
):
    _, straight = train(data, tmp_path / "straight", epochs=4, schedule_epochs=4, **schedule)
    straight_rates = list(step_rates)
    step_rates.clear()
    caplog.set_level(logging.INFO, logger="segpipe.training")
    for epochs in (1, 2, 4):
        _, rungs = train(data, tmp_path / "rungs", epochs=epochs, schedule_epochs=4, **schedule)
    assert "continuing epochs 2..2 of a schedule planned for 4" in caplog.text
    assert "continuing epochs 3..4 of a schedule planned for 4" in caplog.text
    assert "ignoring" not in caplog.text
    assert len(step_rates) == len(straight_rates) == 8  # each step trained once
    assert step_rates == straight_rates
    if schedule["scheduler"] != "constant":
        assert len(set(step_rates)) > 4, step_rates  # a schedule that moves every step
    for name in ("best_path", "last_path"):
        rung, whole = load_checkpoint(rungs[name]), load_checkpoint(straight[name])
        for key in STATE:
            assert_same_state(rung[key], whole[key], f"{name}:{key}")
        assert rung["config"] == whole["config"]
    history = pd.read_csv(rungs["history_path"])
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    expected = pd.read_csv(straight["history_path"])
    pd.testing.assert_frame_equal(history[HISTORY], expected[HISTORY])
    live = pd.read_csv(rungs["resume_dir"] / "history.csv")
    assert live["epoch"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("scheduler", ["cosine", "onecycle"])
def test_without_a_schedule_length_a_longer_run_stretches_the_schedule(
    data, tmp_path, step_rates, scheduler
):
    """schedule_epochs null: a run extended from 2 to 4 epochs continues on a schedule
    stretched to 4 epochs (from its first resumed step on, the rates of a run trained straight
    to 4); its first 2 epochs followed a schedule planned for 2, as a run whose schedule_epochs
    equal its epochs does."""
    train(data, tmp_path / "straight", epochs=4, scheduler=scheduler)
    straight_rates = list(step_rates)
    step_rates.clear()
    for epochs in (2, 4):
        train(data, tmp_path / "rungs", epochs=epochs, scheduler=scheduler)
    rung_rates = list(step_rates)
    assert len(rung_rates) == 8
    assert rung_rates[:4] != straight_rates[:4]  # the first rung's schedule was planned for 2
    # Step 5 trains at the rate the 2-epoch schedule ended with; step 6 on, the stretched one.
    assert rung_rates[5:] == straight_rates[5:]
    assert rung_rates[-1] < rung_rates[5]  # annealing towards the end, not a second cycle
    step_rates.clear()
    train(data, tmp_path / "planned", epochs=2, schedule_epochs=2, scheduler=scheduler)
    assert step_rates == rung_rates[:4]


@pytest.mark.parametrize("epochs", [2, 5])
def test_a_schedule_shorter_than_the_epochs_is_refused_naming_the_option(data, tmp_path, epochs):
    with pytest.raises(ScheduleTooShortError, match="'train.schedule_epochs'") as info:
        train(data, tmp_path, epochs=epochs, schedule_epochs=epochs - 1)
    assert isinstance(info.value, UserError)
    assert f"fewer than train.epochs ({epochs})" in str(info.value)
    assert not list(tmp_path.iterdir()), "nothing is written"


def test_a_rung_with_another_schedule_length_starts_afresh(data, tmp_path, step_rates, caplog):
    train(data, tmp_path / "run", epochs=1, schedule_epochs=4)
    step_rates.clear()
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, paths = train(data, tmp_path / "run", epochs=2, schedule_epochs=6)
    assert "ignoring" in caplog.text and "resuming" not in caplog.text
    assert "training epochs 1..2 of a schedule planned for 6" in caplog.text
    assert len(step_rates) == 4  # both epochs trained again
    assert ckpt["config"]["train"]["schedule_epochs"] == 6
    assert pd.read_csv(paths["history_path"])["epoch"].tolist() == [1, 2]


def test_a_rung_past_the_planned_schedule_is_refused_and_keeps_the_resume_state(data, tmp_path):
    train(data, tmp_path / "run", epochs=2, schedule_epochs=2)
    with pytest.raises(ScheduleTooShortError):
        train(data, tmp_path / "run", epochs=3, schedule_epochs=2)
    assert load_checkpoint(tmp_path / "run" / "resume" / "last.pt")["epoch"] == 2


def test_a_checkpoint_written_before_the_option_existed_still_resumes(data, tmp_path, caplog):
    train(data, tmp_path, epochs=1)
    for name in ("last.pt", "best.pt"):
        path = tmp_path / "resume" / name
        ckpt = load_checkpoint(path)
        del ckpt["config"]["train"]["schedule_epochs"]
        save_checkpoint(path, ckpt)
    caplog.set_level(logging.INFO, logger="segpipe.training")
    ckpt, _ = train(data, tmp_path, epochs=2)
    assert "resuming from" in caplog.text and "ignoring" not in caplog.text
    assert "extending training from 1 to 2 epochs" in caplog.text
    assert [row["epoch"] for row in ckpt["history"]] == [1, 2]


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("steps_per_epoch", [1, 7, 10])
def test_the_search_knows_where_each_schedule_peaks(name, steps_per_epoch):
    """segpipe.workflow.lr_peak.peak_epoch, by which a search refuses a first rung that ends
    before the learning rate peaks, is where the schedule training builds first reaches its
    highest rate: in a step that starts by the peak epoch and ends less than a step before it
    (a warm-up of whole steps: int(warmup_epochs * steps per epoch))."""
    from segpipe.training.schedule import make_scheduler
    from segpipe.training.train_job import TrainConfig
    from segpipe.workflow.lr_peak import peak_epoch

    options = {"warmup_epochs": 0.0, **SCHEDULES[name]}
    cfg = TrainConfig(**{**TRAIN_DEFAULTS, "epochs": 10, "lr": 0.1, **options})
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = make_scheduler(opt, cfg, steps_per_epoch)
    rates = []
    for _ in range(10 * steps_per_epoch):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    first_peak = rates.index(max(rates))  # the step that first trains at the peak rate
    peak = peak_epoch({"scheduler": cfg.scheduler, "warmup_epochs": cfg.warmup_epochs}, 10)
    assert first_peak / steps_per_epoch <= peak < (first_peak + 2) / steps_per_epoch
