"""The report figures: each is a PNG written whole, with nothing left open, for one epoch or
many, classes absent from truth and prediction (NaN scores), an empty confusion row, and up to
many runs with distinct colours."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.reporting.plots import (
    plot_confusion,
    plot_learning_curves,
    plot_per_class,
    plot_runs_learning_curves,
    plot_runs_per_class,
    plot_search_curves,
    run_colors,
)

CLASSES = ["background", "cat", "dog"]


def history(epochs: int, offset: float = 0.0) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    return pd.DataFrame(
        {
            "epoch": e,
            "train_loss": 1 / e + offset,
            "val_loss": 1.2 / e + offset,
            "val_miou": 0.5 + 0.05 * e - offset,
            "val_dice": 0.6 + 0.04 * e - offset,
            "lr": 0.01 / e,
        }
    )


def _is_png(path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize("normalized", [True, False])
def test_confusion_with_an_empty_row(tmp_path, normalized) -> None:
    matrix = np.array([[10, 2, 0], [0, 0, 0], [1, 0, 5]])  # no true "cat" pixels
    plot_confusion(matrix, CLASSES, tmp_path / "confusion.png", normalized=normalized)
    assert _is_png(tmp_path / "confusion.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png"]  # no temporary


@pytest.mark.parametrize("epochs", [1, 12])
def test_learning_curves_of_one_epoch_or_many(tmp_path, epochs) -> None:
    plot_learning_curves(history(epochs), tmp_path / "curves.png")
    assert _is_png(tmp_path / "curves.png")


def test_per_class_with_a_class_absent_from_truth_and_prediction(tmp_path) -> None:
    per_class = pd.DataFrame({"class_name": CLASSES, "iou": [0.9, np.nan, 0.4]})
    per_class["dice"] = [0.95, np.nan, 0.6]
    plot_per_class(per_class, tmp_path / "per_class.png")
    assert _is_png(tmp_path / "per_class.png")


@pytest.mark.parametrize("count", [1, 10, 11, 20, 21, 40])
def test_every_run_gets_its_own_colour(count) -> None:
    colors = run_colors(count)
    assert len(colors) == count == len({tuple(np.round(c, 6)) for c in colors})


@pytest.mark.parametrize("runs", [0, 2, 25])
def test_figures_of_several_runs(tmp_path, runs) -> None:
    histories = {f"run-{i}": history(3 + i % 4, offset=i / 100) for i in range(runs)}
    plot_runs_learning_curves(histories, tmp_path / "curves.png")
    iou = pd.DataFrame(
        [[0.9, np.nan if i % 2 else 0.3, 0.5] for i in range(runs)],
        index=list(histories),
        columns=CLASSES,
    )
    plot_runs_per_class(iou, tmp_path / "per_class.png")
    assert _is_png(tmp_path / "curves.png") and _is_png(tmp_path / "per_class.png")
    assert plt.get_fignums() == []  # nothing left open in pyplot


@pytest.mark.parametrize("count", [1, 9, 25])
def test_search_curves_of_candidates_stopped_at_each_rung(tmp_path, count) -> None:
    """Candidates stopped after 1, 3 or 9 epochs, one without any score (NaN), one with an
    empty history; the winner is drawn on top."""
    stops = [1, 3, 9]
    histories = {f"c{i}": history(stops[i % 3], 0.01 * i) for i in range(count)}
    if count > 1:
        histories["c1"] = histories["c1"].assign(val_miou=np.nan)
        histories["empty"] = history(0)
    plot_search_curves(histories, tmp_path / "search.png", winner="c0", budgets=stops)
    assert _is_png(tmp_path / "search.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.png"]  # no temporary
    assert plt.get_fignums() == []


# Names that matplotlib would parse as mathtext: a bad expression, a lone pair of $, TeX marks.
MATH_LIKE = ["$\\frac$ cells", "50% $ off $", "c_1^2 $x$"]


def test_names_with_dollar_signs_are_drawn_as_written(tmp_path) -> None:
    """A class, run or candidate named with ``$`` ends no report job (matplotlib's mathtext
    failed on "$\\frac$"); matplotlib's own settings are left as they were."""
    before = matplotlib.rcParams["text.parse_math"]
    plot_confusion(np.eye(3, dtype=int), MATH_LIKE, tmp_path / "confusion.png")
    plot_per_class(
        pd.DataFrame({"class_name": MATH_LIKE, "iou": [0.9, 0.5, 0.1], "dice": [0.9, 0.6, 0.2]}),
        tmp_path / "per_class.png",
    )
    histories = {name: history(3) for name in MATH_LIKE}
    plot_runs_learning_curves(histories, tmp_path / "curves.png")
    plot_runs_per_class(
        pd.DataFrame(np.full((3, 3), 0.5), index=MATH_LIKE, columns=MATH_LIKE),
        tmp_path / "runs_per_class.png",
    )
    plot_search_curves(
        histories, tmp_path / "search.png", winner=MATH_LIKE[0], title="$\\frac$ search"
    )
    assert len(list(tmp_path.glob("*.png"))) == 5
    assert matplotlib.rcParams["text.parse_math"] == before
