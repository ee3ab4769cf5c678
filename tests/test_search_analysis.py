"""tools/bench/search_analysis.py: the regret of a search's winner and the interval its verdict
reads, the paired bootstrap of the dataset-level test mIoU."""

from __future__ import annotations

import numpy as np
import pytest

from segpipe.evaluation.metrics import summarize

from tools.bench import search_analysis


def matrices(rng: np.random.Generator, n: int, size: int, right: float) -> dict[str, list[int]]:
    """``n`` two-class images of ``size`` pixels each, a fraction ``right`` of each class's
    pixels predicted right (with some noise): id -> flattened confusion matrix."""
    out = {}
    for i in range(n):
        half = size // 2
        hits = rng.binomial(half, np.clip(right + rng.normal(0, 0.02, 2), 0, 1))
        out[f"img{i:02d}"] = [hits[0], half - hits[0], half - hits[1], hits[1]]
    return out


def pooled_miou(images: dict[str, list[int]]) -> float:
    return summarize(np.sum([np.reshape(m, (2, 2)) for m in images.values()], axis=0))["mean_iou"]


def test_the_difference_is_of_the_pooled_miou_and_equal_models_give_a_zero_width_interval():
    rng = np.random.default_rng(0)
    best, other = matrices(rng, 12, 400, 0.9), matrices(rng, 12, 400, 0.8)
    result = search_analysis.pooled_difference(best, other, n_resamples=999)
    assert result["difference"] == pytest.approx(pooled_miou(best) - pooled_miou(other))
    assert result["n_images"] == 12
    assert 0 < result["ci95"][0] < result["difference"] < result["ci95"][1]
    same = search_analysis.pooled_difference(best, dict(best), n_resamples=999)
    assert same["difference"] == 0 and same["ci95"] == [0, 0]


def test_images_weigh_by_their_pixels_as_in_rule_evaluate_not_alike():
    """The better model by pooled mIoU loses on nine small images and wins on one large one: the
    per-image mean favours the other model, the pooled difference (the regret) does not."""
    rng = np.random.default_rng(1)
    small_best, small_other = matrices(rng, 9, 100, 0.7), matrices(rng, 9, 100, 0.8)
    best = {**small_best, "large": [9000, 1000, 1000, 9000]}
    other = {**small_other, "large": [6000, 4000, 4000, 6000]}
    result = search_analysis.pooled_difference(best, other, n_resamples=999)
    per_image = [
        summarize(np.reshape(best[i], (2, 2)))["mean_iou"]
        - summarize(np.reshape(other[i], (2, 2)))["mean_iou"]
        for i in best
    ]
    assert np.mean(per_image) < 0 < result["difference"]


def test_a_verdict_reads_the_interval_of_the_regret_itself():
    """Held up: the grid's winner, or a winner not worse on test beyond the regret's interval,
    including one better than the grid's (its whole interval below 0)."""
    rng = np.random.default_rng(2)
    close, worse = matrices(rng, 12, 400, 0.9), matrices(rng, 12, 400, 0.7)
    better = matrices(rng, 12, 400, 0.97)
    grid = {"winner": "a", "runs": {}}
    for name, images in {"a": close, "b": dict(close), "c": worse, "d": better}.items():
        grid["runs"][name] = {
            "history_val_miou": [0.5, 0.6],
            "test_miou": pooled_miou(images),
            "test_confusion": images,
            "test_per_image": {
                i: summarize(np.reshape(m, (2, 2)))["mean_iou"] for i, m in images.items()
            },
        }
    grid["regrets"] = {n: search_analysis.regret(grid, n) for n in grid["runs"]}
    verdicts = {
        name: search_analysis.verdict(grid, {"winner": name, "epochs": 1}, goal_ratio=0.5)
        for name in "abcd"
    }
    assert verdicts["a"]["same_winner"] and verdicts["a"]["held_up"]
    held = verdicts["b"]
    assert held["held_up"] and held["meets_goal"] and not held["same_winner"]
    assert held["regret"]["ci95"] == [0, 0]
    missed = verdicts["c"]
    assert not missed["held_up"] and missed["regret"]["ci95"][0] > 0
    assert missed["epochs_ratio"] == round(1 / 8, 4)  # 1 of 4 runs x 2 epochs
    ahead = verdicts["d"]
    assert ahead["regret"]["ci95"][1] < 0 and ahead["held_up"]
