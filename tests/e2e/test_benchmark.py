"""The training benchmark runs and writes every figure (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.repo import REPO, TINY_MODEL

pytestmark = pytest.mark.slow


def test_benchmark_writes_all_figures(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "tools" / "bench" / "bench_train.py"), "--out", str(out),
           "--images", "12", "--steps", "1", "--loader-steps", "2", "--repeats", "1", "--image-size", "32",
           "--batch-size", "4", "--encoder", TINY_MODEL["encoder"], "--workers", "0", "--skip-memory"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in ("naive_loader", "segpipe_loader", "model_only", "end_to_end"):
        assert result[key] > 0
    assert set(result["ratios"]) == {"b_over_a", "d_over_c"}
    assert result["ratios"]["b_over_a"] == pytest.approx(
        result["segpipe_loader"] / result["naive_loader"]
    )
    assert len(result["remap_images_per_s"]) == len(result["preprocess_images_per_s"]) >= 1
    # Both loaders at every worker count tried; (a) is the naive loader's best, (b) segpipe's
    # at the workers training would use (here forced to 0).
    by_workers = result["loader_images_per_s_by_workers"]
    counts = [str(w) for w in result["settings"]["loader_worker_counts"]]
    assert set(by_workers["naive"]) == set(by_workers["segpipe"]) == set(counts) >= {"0"}
    assert result["naive_loader"] == max(by_workers["naive"].values())
    assert result["segpipe_loader"] == by_workers["segpipe"]["0"]
    assert result["device"].startswith("cpu")
    assert set(result["versions"]) >= {"torch", "segmentation_models_pytorch", "kornia", "segpipe"}


def test_memory_benchmark_measures_two_dataset_sizes(tmp_path):
    # A full-size UNet-ResNet18, where the tests use a tiny one: the model's memory is part of what
    # this benchmark measures against the dataset's.
    out = tmp_path / "memory.json"
    cmd = [sys.executable, str(REPO / "tools" / "bench" / "bench_memory.py"), "--out", str(out),
           "--train-samples", "16", "--val-samples", "4", "--fraction", "0.5", "--image-size", "32",
           "--batch-size", "4", "--encoder", "resnet18", "--source-images", "6"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    memory = result["peak_memory"]
    small, full = memory["8_samples"], memory["16_samples"]
    assert (small["train_samples"], full["train_samples"]) == (8, 16)
    assert full["train_array_mb"] == pytest.approx(2 * small["train_array_mb"])  # 32² x 4 B each
    for run in (small, full):
        assert 0 < run["peak_file_mb"] < run["peak_rss_mb"]
        assert 0 < run["peak_anon_mb"] < run["peak_rss_mb"] and run["seconds"] > 0
    grown = memory["growth_mb"]
    assert grown["peak_anon_mb"] == pytest.approx(full["peak_anon_mb"] - small["peak_anon_mb"])
    assert memory["rss_growth_beyond_arrays_mb"] == pytest.approx(
        grown["peak_rss_mb"] - grown["train_array_mb"]
    )
    assert result["settings"]["train_options"]["augment"]  # the Oxford config's augmentation


def test_dag_benchmark_measures_each_dataset_size(tmp_path):
    out = tmp_path / "dag.json"
    cmd = [sys.executable, str(REPO / "tools" / "bench" / "bench_dag.py"), "--out", str(out),
           "--pairs", "4", "12", "--repeats", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["pairs"] for r in result["runs"]] == [4, 12]
    assert [r["files"] for r in result["runs"]] == [10, 26]
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in result["runs"])
    assert result["machine"] and result["date"]


def test_assessment_benchmark_records_each_code_and_its_steps(tmp_path):
    """bench_assess.py at its smallest: one predict case, this commit against itself."""
    out = tmp_path / "assess.json"
    cmd = [sys.executable, str(REPO / "tools" / "bench" / "bench_assess.py"), "--before", "HEAD",
           "--quick", "--no-grid", "--cases", "demo", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    case = result["predict"]["demo"]
    assert case["images"] == 12 and case["image_size"] == 64
    for variant in ("before", "after", "after_all_overlays"):
        assert case[variant]["images_per_cpu_s"] > 0 and case[variant]["imports_cpu_s"] > 0
        steps = case[variant]["profile_s"]
        assert (
            steps["forward"] > 0
            and steps["all"] >= sum(v for k, v in steps.items() if k != "all") * 0.99
        )
    # The pipeline's options of each code: overlays of every split image only when asked.
    assert case["after"]["options"]["with_overlays"] is False
    assert case["after_all_overlays"]["options"]["with_overlays"] is True
    assert case["after_all_overlays"]["profile_s"]["overlay: blend"] > 0
    assert case["after"]["profile_s"]["overlay: blend"] == 0
    assert set(result["load_average_1min"]) == {"before_predict", "after_predict"}
    from tools import performance_figures

    assert "the demo's: Unet-resnet18 at 64², 12 images" in performance_figures.assess(result)
