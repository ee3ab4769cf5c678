"""The training benchmark runs and writes every figure (no timing is asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_benchmark_writes_all_figures(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_train.py"), "--out", str(out),
           "--images", "12", "--steps", "1", "--loader-steps", "2", "--repeats", "1", "--image-size", "32",
           "--batch-size", "4", "--encoder", "resnet18", "--workers", "0", "--skip-memory"]  # fmt: skip
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
