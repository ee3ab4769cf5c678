"""The batch-size probe: a child process that trains steps of the planned model and reports each
batch's peak memory and step time. The tests that start it (``python -m segpipe.planning.probe``)
are in the slow tier."""

from __future__ import annotations

import json
import subprocess

import pytest

from segpipe.planning import probe as probe_module
from segpipe.planning.probe import ProbeError, ProbeSpec, predicted_mb, run_probe


def tiny(device: str = "cpu", **changes) -> ProbeSpec:
    spec = dict(
        arch="Unet",
        encoder="tu-resnet10t",
        encoder_depth=3,
        decoder_channels=[16, 8, 4],
        classes=3,
        loss="ce+dice",
        image_size=32,
        device=device,
        batches=[2, 4, 8],
        budget_mb=100_000,
        threads=1,
    )
    return ProbeSpec(**{**spec, **changes})


@pytest.mark.slow
def test_the_cpu_probe_measures_each_batch_in_a_child_process():
    result = run_probe(tiny())
    assert result["device"] == "cpu" and result["image_size"] == 32
    trials = result["trials"]
    assert [t["batch"] for t in trials] == [2, 4, 8]
    for trial in trials:
        assert trial["measured"] and trial["step_s"] > 0
        assert trial["peak_mb"] >= result["baseline_mb"] > 100  # the interpreter and torch
        assert trial["growth_mb"] == pytest.approx(
            trial["peak_mb"] - result["baseline_mb"], abs=0.2
        )
    peaks = [t["peak_mb"] for t in trials]
    assert peaks == sorted(peaks)


@pytest.mark.slow
def test_a_batch_past_the_budget_ends_the_probe():
    result = run_probe(tiny(budget_mb=50))  # below the process itself
    assert [t["batch"] for t in result["trials"]] == [2]
    assert result["trials"][0]["peak_mb"] > 50


def test_a_batch_predicted_past_the_budget_is_not_run():
    trials = [
        {"batch": 2, "measured": True, "peak_mb": 1000},
        {"batch": 4, "measured": True, "peak_mb": 1400},
    ]
    assert predicted_mb(trials, 8) == 2200
    assert predicted_mb(trials[:1], 8) is None
    oom = [*trials, {"batch": 8, "measured": True, "oom": True, "peak_mb": None}]
    assert predicted_mb(oom, 16) == 3800  # measured ones only


@pytest.mark.slow
def test_the_probe_reports_a_prediction_and_stops(monkeypatch):
    """With a budget between batch 4's measured peak and batch 8's predicted one, batch 8 is
    reported as predicted, not run."""
    first = run_probe(tiny(batches=[2, 4]))
    two, four = (t["peak_mb"] for t in first["trials"])
    guess = four + (four - two) * 2
    if guess - four < 1:
        pytest.skip("batch 4 took no more memory than batch 2 here: nothing to predict")
    result = run_probe(tiny(budget_mb=(four + guess) / 2))
    assert result["trials"][-1]["batch"] == 8 and result["trials"][-1]["measured"] is False


@pytest.mark.slow
def test_a_child_that_fails_is_one_line():
    with pytest.raises(ProbeError, match=r"the batch-size probe failed on cpu: .*nope"):
        run_probe(tiny(encoder="nope"))


def test_a_child_killed_mid_batch_marks_that_batch_out_of_memory(monkeypatch):
    lines = [
        {"device": "cpu", "image_size": 32, "baseline_mb": 500.0},
        {"batch": 2, "measured": True, "peak_mb": 900.0, "step_s": 0.1, "growth_mb": 400.0},
    ]
    stdout = "".join(json.dumps(line) + "\n" for line in lines)

    def killed(*args, **kwargs):
        return subprocess.CompletedProcess(args, -9, stdout=stdout, stderr="")

    monkeypatch.setattr(probe_module.subprocess, "run", killed)
    trials = run_probe(tiny())["trials"]
    assert trials[-1] == {"batch": 4, "measured": True, "oom": True, "peak_mb": None}


@pytest.mark.slow
def test_the_cuda_probe_without_a_gpu_says_so():
    if probe_module.cuda_memory_mb() is not None:
        pytest.skip("a CUDA device is visible here")
    with pytest.raises(ProbeError, match="no CUDA device is visible here"):
        run_probe(tiny("cuda"))


@pytest.mark.slow
@pytest.mark.cuda
def test_the_cuda_probe_measures_allocated_memory():
    total = probe_module.cuda_memory_mb()
    assert total and total > 1000
    result = run_probe(tiny("cuda", image_size=128, budget_mb=total))
    assert result["device"] == "cuda" and result["baseline_mb"] == 0
    trials = result["trials"]
    assert [t["batch"] for t in trials] == [2, 4, 8]
    assert all(0 < t["peak_mb"] < total and t["step_s"] > 0 for t in trials)
    assert trials[0]["peak_mb"] < trials[-1]["peak_mb"]
