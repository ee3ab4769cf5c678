"""Report figures: confusion-matrix heatmap, learning curves and per-class scores, and the
comparison report's figures of several runs overlaid.

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas rather than through
pyplot: no GUI backend is ever selected, and since pyplot's global figure registry never holds
them there is nothing left open after saving; a figure is freed once it goes out of scope.
Each PNG is written atomically.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import ParamSpec

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from segpipe.io import atomic_path

logger = logging.getLogger(__name__)
P = ParamSpec("P")

DPI = 110
_MISSING_NOTE = "n/a: class absent from both ground truth and prediction"


def _literal_text(plot: Callable[P, None]) -> Callable[P, None]:
    """Draw every text of ``plot``'s figure as written: a class, run or title holding ``$``
    (``"$5 off"``, ``"$\\frac$ cells"``) is no mathtext for matplotlib to parse, or fail on."""

    @functools.wraps(plot)
    def literal(*args: P.args, **kwargs: P.kwargs) -> None:
        with matplotlib.rc_context({"text.parse_math": False}):
            plot(*args, **kwargs)

    return literal


def _new_figure(width: float, height: float) -> Figure:
    """A figure attached to an Agg canvas, independent of pyplot."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` as PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    logger.info("wrote figure %s", path)


@_literal_text
def plot_confusion(
    matrix: np.ndarray | pd.DataFrame,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    normalized: bool = True,
) -> None:
    """Heatmap of a confusion matrix (rows: true class, columns: predicted class).

    ``matrix`` holds pixel counts. With ``normalized`` each row is divided by its sum, so a cell is
    the fraction of that true class's pixels predicted as the column's class; a class with no true
    pixels has an empty (grey) row. Otherwise the raw counts are drawn. Every cell carries its
    value as text.
    """
    counts = np.asarray(matrix, dtype=float)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {counts.shape}, expected ({n}, {n})")
    if normalized:
        totals = counts.sum(axis=1, keepdims=True)
        values = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
        vmax = 1.0
    else:
        values = counts
        vmax = max(float(np.nanmax(counts)), 1.0) if n else 1.0

    side = min(max(4.0, 0.6 * n + 2.5), 16.0)
    fig = _new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of true pixels" if normalized else None)

    rotate = n > 4
    ax.set_xticks(
        range(n),
        labels=class_names,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
    )
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalized else " (pixel counts)"))

    fontsize = 10 if n <= 8 else 7 if n <= 30 else 5
    for i in range(n):
        for j in range(n):
            value = values[i, j]
            if np.isnan(value):
                text, color = "n/a", "0.3"
            else:
                text = f"{value:.2f}" if normalized else f"{value:,.0f}"
                color = "white" if value > 0.6 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)
    _save(fig, path)


@_literal_text
def plot_learning_curves(history: pd.DataFrame, path: str | os.PathLike) -> None:
    """Three stacked panels over epochs: train/val loss, val mIoU/Dice, and the learning rate.

    ``history`` has the columns of ``history.csv``: ``epoch``, ``train_loss``, ``val_loss``,
    ``val_miou``, ``val_dice`` and ``lr``. The learning rate uses a log axis when it is positive
    and spans more than a factor of ten.
    """
    epochs = history["epoch"]
    marker = "o" if len(history) <= 30 else None
    fig = _new_figure(7.0, 8.0)
    loss_ax, score_ax, lr_ax = fig.subplots(3, 1, sharex=True, height_ratios=[3, 3, 2])

    loss_ax.plot(epochs, history["train_loss"], marker=marker, label="train loss")
    loss_ax.plot(epochs, history["val_loss"], marker=marker, label="val loss")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title("Learning curves")

    score_ax.plot(epochs, history["val_miou"], marker=marker, color="C2", label="val mIoU")
    score_ax.plot(epochs, history["val_dice"], marker=marker, color="C3", label="val Dice")
    score_ax.set_ylabel("score")

    lr = history["lr"]
    lr_ax.plot(epochs, lr, marker=marker, color="C4", label="learning rate")
    if (lr > 0).all() and lr.max() > 10 * lr.min():
        lr_ax.set_yscale("log")
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("epoch")
    lr_ax.xaxis.set_major_locator(MaxNLocator(integer=True))

    for ax in (loss_ax, score_ax, lr_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    _save(fig, path)


@_literal_text
def plot_per_class(per_class: pd.DataFrame, path: str | os.PathLike) -> None:
    """Grouped bars of IoU and Dice per class.

    ``per_class`` has the columns ``class_name``, ``iou`` and ``dice`` (as in ``per_class.csv``);
    a NaN score gets no bar but an "n/a" label, explained by a note under the axes.
    """
    names = per_class["class_name"].astype(str).tolist()
    n = len(names)
    x = np.arange(n)
    width = 0.4
    fig = _new_figure(min(max(5.0, 0.7 * n + 2.0), 18.0), 4.5)
    ax = fig.add_subplot()

    any_missing = False
    for offset, column, label in ((-width / 2, "iou", "IoU"), (width / 2, "dice", "Dice")):
        scores = per_class[column].to_numpy(dtype=float)
        bars = ax.bar(x + offset, np.nan_to_num(scores, nan=0.0), width, label=label)
        labels = ["n/a" if np.isnan(s) else (f"{s:.2f}" if n <= 12 else "") for s in scores]
        ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
        any_missing = any_missing or bool(np.isnan(scores).any())

    ax.set_xticks(x, labels=names, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.set_title("Per-class IoU and Dice")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", ncols=2)
    if any_missing:
        fig.supxlabel(_MISSING_NOTE, fontsize=9, color="0.35")
    _save(fig, path)


def run_colors(count: int) -> list:
    """``count`` distinct colours, one per run: tab10 up to 10 runs, tab20 up to 20, then an
    even spread over a continuous colormap."""
    if count <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(count)]
    return [matplotlib.colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, count)]


@_literal_text
def plot_runs_learning_curves(
    histories: Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    *,
    title: str = "Learning curves of the runs",
) -> None:
    """Validation mIoU, training loss and validation loss over epochs, one line per run.

    ``histories`` maps a run's (or a fold model's) name to its ``history.csv`` table, in legend
    order; a run keeps its colour in all three panels, and the legend (one, beside the panels)
    names them. ``title`` heads the top panel.
    """
    fig = _new_figure(9.0, 9.0)
    axes = fig.subplots(3, 1, sharex=True)
    panels = (("val_miou", "val mIoU"), ("train_loss", "train loss"), ("val_loss", "val loss"))
    colors = run_colors(len(histories))
    for (name, history), color in zip(histories.items(), colors, strict=True):
        for ax, (column, _) in zip(axes, panels, strict=True):
            ax.plot(history["epoch"], history[column], color=color, linewidth=1.4, label=name)
    for ax, (_, label) in zip(axes, panels, strict=True):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if histories:
        fig.legend(
            *axes[0].get_legend_handles_labels(),
            loc="outside right upper",
            ncols=1 if len(histories) <= 20 else 2,
            fontsize=8,
        )
    _save(fig, path)


@_literal_text
def plot_runs_per_class(iou: pd.DataFrame, path: str | os.PathLike) -> None:
    """Grouped bars of test IoU: one group per class, one bar per run.

    ``iou`` has one row per run (the index names it, in legend order) and one column per class;
    a NaN score gets no bar, and a note under the axes says what that means.
    """
    runs = [str(name) for name in iou.index]
    classes = [str(name) for name in iou.columns]
    x = np.arange(len(classes))
    width = 0.8 / max(len(runs), 1)
    fig = _new_figure(min(max(6.0, 0.25 * len(runs) * len(classes) + 3.0), 18.0), 4.8)
    ax = fig.add_subplot()
    scores = iou.to_numpy(dtype=float)
    for i, (name, color) in enumerate(zip(runs, run_colors(len(runs)), strict=True)):
        offset = (i - (len(runs) - 1) / 2) * width
        ax.bar(x + offset, np.nan_to_num(scores[i], nan=0.0), width, color=color, label=name)
    rotate = len(classes) > 6
    ax.set_xticks(
        x, labels=classes, rotation=45 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_ylim(0, 1.0)
    ax.set_ylabel("test IoU")
    ax.set_title("Per-class test IoU by run")
    ax.grid(axis="y", alpha=0.3)
    if runs:
        fig.legend(loc="outside right upper", ncols=1 if len(runs) <= 20 else 2, fontsize=8)
    if np.isnan(scores).any():
        fig.supxlabel(_MISSING_NOTE + " (no bar)", fontsize=9, color="0.35")
    _save(fig, path)


@_literal_text
def plot_search_curves(
    histories: Mapping[str, pd.DataFrame],
    path: str | os.PathLike,
    *,
    winner: str,
    budgets: Sequence[int] = (),
    title: str = "Successive-halving search",
    winner_label: str = "winner",
) -> None:
    """Validation mIoU over epochs of every candidate of a search, one line each.

    ``histories`` maps a candidate to its ``history.csv`` table up to where it stopped, in
    legend order; each line ends with a marker at its last epoch. The ``winner`` is drawn
    thick, on top, and named in the legend with ``winner_label``; the rung ``budgets``
    (cumulative epochs) are dotted vertical lines.
    """
    fig = _new_figure(9.0, 5.0)
    ax = fig.add_subplot()
    for budget in budgets:
        ax.axvline(budget, color="0.6", linestyle=":", linewidth=1)
    for (name, history), color in zip(histories.items(), run_colors(len(histories)), strict=True):
        is_winner = name == winner
        ax.plot(
            history["epoch"],
            history["val_miou"],
            color=color,
            linewidth=2.8 if is_winner else 1.2,
            alpha=1.0 if is_winner else 0.8,
            zorder=3 if is_winner else 2,
            marker="*" if is_winner else "o",
            markersize=14 if is_winner else 6,
            markeredgecolor="black" if is_winner else color,
            markevery=[len(history) - 1] if len(history) else None,
            label=f"{name} ({winner_label})" if is_winner else name,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mIoU")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if histories:
        fig.legend(loc="outside right upper", ncols=1 if len(histories) <= 20 else 2, fontsize=8)
    _save(fig, path)
