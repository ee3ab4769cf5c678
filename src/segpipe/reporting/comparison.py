"""Comparison report of several training runs: which run validation selects, and how the others
differ from it image by image.

:func:`build_comparison` reads each run's outputs (train, predict, evaluate and, for a run with
k-fold cross-validation, its summary of :mod:`segpipe.evaluation.crossval`), ranks the runs by validation
mIoU (a cross-validated run by its mean over the folds), draws the runs' learning curves and
per-class test IoU side by side (:mod:`segpipe.reporting.plots`), compares every other run with the
selected one image by image, and renders ``templates/compare.html.j2`` into one self-contained
HTML file (inline CSS, images as base64 data URIs), plus the leaderboard as CSV.

The paired comparison uses the test split, or, when every run is cross-validated, the
out-of-fold validation scores of the train+val pool (every pool image scored once, by the fold
model that did not train on it). The galleries always show the test predictions.

The selection uses validation scores only: picking the run with the best test score would make
the test score of the pick an optimistic estimate. The test split only describes the runs.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from segpipe.data import predictions
from segpipe.data.colors import colorize, legend
from segpipe.data.images import load_rgb
from segpipe.data.masks import load_mask
from segpipe.evaluation.selection import number, rank_key
from segpipe.io import read_json, read_table, write_csv, write_text
from segpipe.reporting import plots
from segpipe.reporting.html import (
    data_uri,
    is_missing,
    panel_sheet,
    png_bytes,
    template_environment,
)
from segpipe.reporting.run_report import infer_gallery, training_summary

logger = logging.getLogger(__name__)

CONFIDENCE = 0.95
# The inputs a run cannot be compared without; model_json is optional (parameters "n/a").
REQUIRED_INPUTS = (
    "val_metrics",
    "test_metrics",
    "test_per_class",
    "test_per_image",
    "history",
    "test_manifest",
    "test_predictions",
)
# The cross-validation summary of a run with folds (segpipe.evaluation.crossval): all three or none.
CROSSVAL_INPUTS = ("crossval_metrics", "crossval_folds", "crossval_per_image")
FIGURES = {"learning_curves": "learning_curves.png", "per_class": "per_class.png"}
METRIC_COLUMNS = {  # leaderboard column -> (split, key in metrics.json)
    "val_miou": ("val", "mean_iou"),
    "test_miou": ("test", "mean_iou"),
    "test_mean_dice": ("test", "mean_dice"),
    "test_foreground_iou": ("test", "foreground_iou"),
    "test_pixel_accuracy": ("test", "pixel_accuracy"),
}
SCORE_COLUMNS = ("val_miou", "val_miou_std", *(c for c in METRIC_COLUMNS if c != "val_miou"))
TRAINING_COLUMNS = ("best_epoch", "epochs", "train_seconds", "images_per_s", "parameters")
# The run whose trained model a run shares (RunResult.trained_as); empty for its own.
SHARED_COLUMN = "trained_as"
INTEGER_COLUMNS = ("rank", "folds", "best_epoch", "epochs", "parameters")
# What the paired differences are computed on: all runs cross-validated, or not.
PAIRED_DATA = {
    True: "out-of-fold validation images of the train+val pool (cross-validation)",
    False: "test split",
}


@dataclass(frozen=True)
class RunResult:
    """Where one run's outputs are, and what the run changes against the base config.

    ``overrides`` maps dotted options to values (empty for the base config); ``report_html`` is
    the run's own report, relative to the comparison report's folder (the link's href). The
    other fields are paths: the val and test ``metrics.json``, the test ``per_class.csv`` and
    ``per_image.csv``, ``history.csv``, ``model.json`` (optional: may be None or missing), the
    test split manifest and the test predictions folder (holding ``masks/<id>.png``).

    ``trained_as`` names the earlier run whose trained model(s) this run shares (it differs
    from it only in options that cannot change a trained weight: segpipe.params.OPTION_CLASSES):
    the two are views of one model, and ``history`` and ``model_json`` are that run's. None: its
    own training.

    A run with k-fold cross-validation also has :data:`CROSSVAL_INPUTS`, its ``crossval/``
    ``metrics.json``, ``folds.csv`` and ``per_image.csv`` (None for a run without folds); its
    ``val_metrics``, ``history`` and ``model_json`` are then fold 0's, its test fields the fold
    ensemble's (fold 0's without one).
    """

    name: str
    overrides: dict[str, Any]
    report_html: str
    val_metrics: str | os.PathLike
    test_metrics: str | os.PathLike
    test_per_class: str | os.PathLike
    test_per_image: str | os.PathLike
    history: str | os.PathLike
    model_json: str | os.PathLike | None
    test_manifest: str | os.PathLike
    test_predictions: str | os.PathLike
    crossval_metrics: str | os.PathLike | None = None
    crossval_folds: str | os.PathLike | None = None
    crossval_per_image: str | os.PathLike | None = None
    trained_as: str | None = None

    @property
    def cross_validated(self) -> bool:
        """Whether the run has a cross-validation summary."""
        return self.crossval_metrics is not None

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RunResult:
        """A RunResult from a mapping of its fields (a Snakemake param); ``overrides`` defaults
        to none, ``model_json``, ``trained_as`` and :data:`CROSSVAL_INPUTS` to None. An unknown or missing
        field raises ValueError."""
        names = [field.name for field in dataclasses.fields(cls)]
        values = {
            "overrides": {},
            "model_json": None,
            "trained_as": None,
            **dict.fromkeys(CROSSVAL_INPUTS),
            **mapping,
        }
        unknown = sorted(set(values) - set(names))
        missing = [name for name in names if name not in values]
        if unknown or missing:
            raise ValueError(
                f"run {mapping.get('name', '?')!r}: unknown fields {unknown}, missing {missing}"
            )
        return cls(**{**values, "overrides": dict(values["overrides"] or {})})


@dataclass(frozen=True)
class PairedDifference:
    """Mean per-image difference of two runs over the images scored in both, with its bootstrap
    confidence interval (None where it cannot be computed: ``low`` and ``high`` with fewer than
    two images, all three with none)."""

    n_images: int
    mean: float | None
    low: float | None
    high: float | None

    @property
    def verdict(self) -> str:
        """The verdict on the other run: "better" or "worse" when the interval excludes 0, else
        "no clear difference"; "n/a" without an interval."""
        if self.low is None or self.high is None:
            return "n/a"
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "no clear difference"


@dataclass(frozen=True)
class _RunData:
    """A run's inputs as read: its leaderboard row, history and test per-image scores; for a
    cross-validated run also its unranked fold and ensemble rows and its out-of-fold per-image
    validation scores."""

    run: RunResult
    row: dict[str, Any]
    history: pd.DataFrame
    per_image: pd.DataFrame
    fold_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    out_of_fold: pd.DataFrame | None = None


def build_comparison(
    out_html: str | os.PathLike,
    figures_dir: str | os.PathLike,
    leaderboard_csv: str | os.PathLike,
    runs: Sequence[RunResult],
    *,
    class_names: Sequence[str],
    ignore_index: int = 255,
    title: str = "segpipe comparison",
    gallery_size: int = 3,
    seed: int = 0,
    n_resamples: int = 10_000,
    infer: Mapping[str, Any] | None = None,
) -> None:
    """Write the leaderboard CSV, the figures (:data:`FIGURES` in ``figures_dir``) and the HTML
    comparison of ``runs``.

    The run with the highest validation mIoU is selected (a cross-validated run: its mean over
    the folds; ties: the first declared; a run without a validation mIoU ranks last). Every
    other run is compared with it: the mean per-image mIoU difference with a ``seed``-ed
    bootstrap confidence interval (``n_resamples`` resamples), on the out-of-fold validation
    scores when every run is cross-validated, else on the test split; and a gallery of the
    ``gallery_size`` test images where the two runs' predictions disagree most. A missing
    required input (:data:`REQUIRED_INPUTS`, and :data:`CROSSVAL_INPUTS` where given) raises
    :class:`FileNotFoundError` naming it and its run, before anything is written.

    ``infer`` (``predictions``: the folder :func:`segpipe.inference.predict_selected.predict_selected` wrote, ``gallery_size``,
    and ``overlay_alpha``: run -> predict.overlay_alpha) adds a gallery of the selected run's
    predictions of new images; a folder predicted by another run raises ValueError.
    """
    _check_inputs(runs)
    data = _rank([_read_run(run, class_names) for run in runs])
    rows = [row for d in data for row in (d.row, *d.fold_rows)]
    write_csv(leaderboard_csv, leaderboard_frame(rows, class_names))
    figures = _figures(data, class_names, Path(figures_dir))
    selected, others = data[0], data[1:]
    on_crossval = all(run.cross_validated for run in runs)
    options = {
        "ignore_index": ignore_index,
        "gallery_size": gallery_size,
        "seed": seed,
        "n_resamples": n_resamples,
        "on_crossval": on_crossval,
    }
    context = {
        "title": title,
        "classes": list(class_names),
        "rows": rows,
        "cross_validated": any(run.cross_validated for run in runs),
        "on_crossval": on_crossval,
        "paired_data": PAIRED_DATA[on_crossval],
        "show_foreground": any(not is_missing(d.row["test_foreground_iou"]) for d in data),
        "selected": selected.run.name,
        "differs": [
            {"name": d.run.name, "href": d.run.report_html, "lines": override_lines(d.run)}
            for d in data
        ],
        "figures": figures,
        "comparisons": _comparisons(selected, others, class_names, options),
        "confidence": CONFIDENCE,
        "n_resamples": n_resamples,
        "seed": seed,
        "gallery_size": gallery_size,
        "legend": legend(class_names),
        "infer": _selected_infer(infer, selected.run.name, len(class_names)) if infer else None,
    }
    write_text(out_html, template_environment().get_template("compare.html.j2").render(context))
    logger.info(
        "wrote comparison of %d runs %s; selected %s", len(runs), out_html, selected.run.name
    )


def _check_inputs(runs: Sequence[RunResult]) -> None:
    """Raise for no runs, a repeated run name or a missing required input."""
    if not runs:
        raise ValueError("no runs to compare")
    names = [run.name for run in runs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"run names must be unique; repeated: {repeated}")
    for run in runs:
        given = [field for field in CROSSVAL_INPUTS if getattr(run, field) is not None]
        if given and len(given) < len(CROSSVAL_INPUTS):
            raise ValueError(
                f"run {run.name!r}: the cross-validation inputs {list(CROSSVAL_INPUTS)} come "
                f"together; given only {given}"
            )
        for field in (*REQUIRED_INPUTS, *given):
            path = getattr(run, field)
            if not Path(path).exists():
                raise FileNotFoundError(
                    errno.ENOENT,
                    f"comparison input {field} of run {run.name!r} not found",
                    str(path),
                )


def _read_run(run: RunResult, class_names: Sequence[str]) -> _RunData:
    """Read one run's metrics, per-class IoU, history, model size and per-image scores, and for
    a cross-validated run its summary (:func:`_crossval_scores`), folds and out-of-fold scores."""
    metrics = {split: read_json(getattr(run, f"{split}_metrics")) for split in ("val", "test")}
    row: dict[str, Any] = {
        "run": run.name,
        "model": "",
        "folds": None,
        "report_html": run.report_html,
        "val_miou_std": None,
    }
    for column, (split, key) in METRIC_COLUMNS.items():
        row[column] = number(metrics[split].get(key))
    per_class = read_table(run.test_per_class)
    iou = dict(zip(per_class["class_name"], per_class["iou"], strict=True))
    row["iou"] = {name: number(iou.get(name)) for name in class_names}
    history = read_table(run.history)
    training = training_summary(history)
    row["best_epoch"], row["epochs"] = training["best_epoch"], training["epochs"]
    row["train_seconds"] = number(training["seconds"])
    row["images_per_s"] = number(training["images_per_s"])
    row["parameters"] = _parameters(run.model_json)
    row["trained_as"] = run.trained_as
    per_image = read_table(run.test_per_image)
    if run.crossval_metrics is None:  # not cross-validated
        return _RunData(run, row, history, per_image)
    assert run.crossval_folds is not None and run.crossval_per_image is not None  # with metrics
    row.update(_crossval_scores(read_json(run.crossval_metrics), class_names))
    fold_rows = _fold_rows(run, read_table(run.crossval_folds), class_names)
    return _RunData(run, row, history, per_image, fold_rows, read_table(run.crossval_per_image))


def _crossval_scores(summary: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """The ranked row's scores of a cross-validated run, from its ``crossval/metrics.json``:
    validation mIoU mean and std over the folds, and the folds' mean test scores and per-class
    test IoU."""
    val, test = summary.get("val") or {}, summary.get("test") or {}
    per_class = test.get("per_class_iou") or {}
    scores = {
        column: number((test.get(key) or {}).get("mean"))
        for column, (split, key) in METRIC_COLUMNS.items()
        if split == "test"
    }
    return {
        "model": "cv",
        "folds": int(summary["folds"]),
        "val_miou": number((val.get("mean_iou") or {}).get("mean")),
        "val_miou_std": number((val.get("mean_iou") or {}).get("std")),
        **scores,
        "iou": {name: number((per_class.get(name) or {}).get("mean")) for name in class_names},
    }


def _fold_rows(
    run: RunResult, folds: pd.DataFrame, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """The unranked leaderboard rows of a cross-validated run, one per row of its
    ``crossval/folds.csv`` (each fold model, then the ensemble): their val and test scores."""
    return [
        {
            "rank": None,
            "run": run.name,
            "model": str(record["model"]),
            "selected": False,
            "folds": None,
            "report_html": run.report_html,
            **{
                column: number(record.get(f"{split}_{key}"))
                for column, (split, key) in METRIC_COLUMNS.items()
            },
            "val_miou_std": None,
            "iou": dict.fromkeys(class_names),
            **dict.fromkeys(TRAINING_COLUMNS),
            SHARED_COLUMN: _shared_fold(run, str(record["model"])),
        }
        for record in folds.to_dict("records")
    ]


def _shared_fold(run: RunResult, model: str) -> str | None:
    """The fold model whose training a fold of a run that shares its trainings is: the same
    fold of the run it shares; None for its own folds and for the ensemble (never trained)."""
    if run.trained_as is None or not model.startswith("fold"):
        return None
    return f"{run.trained_as}/{model}"


def _parameters(path: str | os.PathLike | None) -> int | None:
    """The parameter count in ``model.json``; None (shown as "n/a") if it is not there."""
    if path is None:
        return None
    if not Path(path).is_file():
        logger.warning("model description %s is missing; parameters shown as n/a", path)
        return None
    try:
        value = read_json(path).get("parameters")
    except (ValueError, AttributeError) as exc:
        logger.warning("cannot read %s (%s); parameters shown as n/a", path, exc)
        return None
    return int(value) if isinstance(value, numbers.Integral) else None


def _rank(data: Iterable[_RunData]) -> list[_RunData]:
    """The runs by validation mIoU (a cross-validated run's: the mean over its folds), best
    first (stable: ties keep the declared order; no score ranks last); sets each row's ``rank``
    and ``selected`` (the first)."""
    ranked = sorted(data, key=lambda d: rank_key(d.row["val_miou"]))
    for i, d in enumerate(ranked):
        d.row["rank"] = i + 1
        d.row["selected"] = i == 0
    return ranked


def _selected_infer(infer: Mapping[str, Any], selected: str, num_classes: int) -> dict[str, Any]:
    """The gallery of the selected run's predictions of new images (``infer["predictions"]``,
    :func:`segpipe.inference.predict_selected.predict_selected`); ValueError when another run predicted them."""
    folder = Path(infer["predictions"])
    run = read_json(folder / "run.json")["run"]
    if run != selected:
        raise ValueError(
            f"{folder} holds the predictions of run {run!r}, but the leaderboard selects "
            f"{selected!r}; delete the folder and run the workflow again"
        )
    alpha = infer.get("overlay_alpha", {}).get(run, 0.5)
    gallery = infer_gallery(folder, infer["gallery_size"], num_classes=num_classes, alpha=alpha)
    return {"run": run, "folder": str(folder), **gallery}


def leaderboard_frame(
    rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]
) -> pd.DataFrame:
    """The leaderboard as a table: rank, run, model ("cv" for a cross-validated run, fold<i> or
    "ensemble" for its unranked rows, empty otherwise), selected, folds, the scores
    (:data:`SCORE_COLUMNS`), ``iou_<class>`` per class, the training summary and the run whose
    trained model a run shares (``trained_as``); integers stay integers, missing values are
    empty cells."""
    columns = ["rank", "run", "model", "selected", "folds", *SCORE_COLUMNS]
    records = [
        {
            **{column: row[column] for column in columns},
            **{f"iou_{name}": row["iou"][name] for name in class_names},
            **{column: row[column] for column in TRAINING_COLUMNS},
            SHARED_COLUMN: row.get(SHARED_COLUMN),
        }
        for row in rows
    ]
    frame = pd.DataFrame.from_records(
        records,
        columns=[
            *columns,
            *(f"iou_{name}" for name in class_names),
            *TRAINING_COLUMNS,
            SHARED_COLUMN,
        ],
    )
    return frame.astype({column: "Int64" for column in INTEGER_COLUMNS})


def override_lines(run: RunResult) -> list[str]:
    """``option = value`` per override of ``run`` (values as in YAML/JSON: true, null, 0.001,
    [1, 2]; strings as they are), or ["base config"] when it overrides nothing."""
    lines = [
        f"{option} = {value if isinstance(value, str) else json.dumps(value)}"
        for option, value in run.overrides.items()
    ] or ["base config"]
    if run.trained_as:
        lines.append(f"the same trained model as {run.trained_as} (no training of its own)")
    return lines


def _figures(data: Sequence[_RunData], class_names: Sequence[str], figures_dir: Path) -> dict:
    """Draw the overlaid learning curves and per-class IoU by run; their data URIs by name."""
    paths = {name: figures_dir / filename for name, filename in FIGURES.items()}
    plots.plot_runs_learning_curves({d.run.name: d.history for d in data}, paths["learning_curves"])
    iou = pd.DataFrame(
        [[d.row["iou"][name] for name in class_names] for d in data],
        index=[d.run.name for d in data],
        columns=list(class_names),
        dtype=float,
    )
    plots.plot_runs_per_class(iou, paths["per_class"])
    return {name: data_uri(path.read_bytes()) for name, path in paths.items()}


def paired_difference(
    selected: pd.DataFrame,
    other: pd.DataFrame,
    *,
    seed: int = 0,
    n_resamples: int = 10_000,
    confidence: float = CONFIDENCE,
) -> PairedDifference:
    """Per-image mean IoU of ``other`` minus that of ``selected`` (``per_image.csv`` tables),
    paired by image id over the ids scored (not NaN) in both; see :func:`bootstrap_mean`."""
    paired = selected[["id", "mean_iou"]].merge(
        other[["id", "mean_iou"]], on="id", suffixes=("_selected", "_other")
    )
    differences = paired["mean_iou_other"] - paired["mean_iou_selected"]
    return bootstrap_mean(
        differences.dropna().to_numpy(dtype=float),
        seed=seed,
        n_resamples=n_resamples,
        confidence=confidence,
    )


def bootstrap_mean(
    differences: np.ndarray,
    *,
    seed: int = 0,
    n_resamples: int = 10_000,
    confidence: float = CONFIDENCE,
) -> PairedDifference:
    """The mean of paired differences and its percentile bootstrap confidence interval.

    Resampling the differences resamples the images with both runs' scores together, which is
    the paired bootstrap. The percentile interval is defined for any sample that varies (BCa's
    jackknife can be undefined on small or tied samples). Degenerate samples get no resampling:
    equal differences give the interval [mean, mean], fewer than two no interval. The generator
    is seeded with ``seed``, so a report rebuilt from the same inputs shows the same interval.
    """
    n = len(differences)
    if n == 0:
        return PairedDifference(0, None, None, None)
    mean = float(np.mean(differences))
    if n < 2:
        return PairedDifference(n, mean, None, None)
    if np.ptp(differences) == 0:
        return PairedDifference(n, mean, mean, mean)
    result = scipy.stats.bootstrap(
        (differences,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return PairedDifference(n, mean, float(low), float(high))


def disagreement(
    truth: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, ignore_index: int
) -> float:
    """Fraction of the labelled pixels of ``truth`` (not ``ignore_index``) where the two
    predictions differ; NaN for a mask without a labelled pixel."""
    if not truth.shape == pred_a.shape == pred_b.shape:
        raise ValueError(
            f"mask sizes differ: truth {truth.shape}, predictions {pred_a.shape}, {pred_b.shape}"
        )
    labelled = truth != ignore_index
    count = int(labelled.sum())
    return float(((pred_a != pred_b) & labelled).sum() / count) if count else float("nan")


def _disagreements(
    manifest: pd.DataFrame,
    selected: _RunData,
    others: Sequence[_RunData],
    ignore_index: int,
) -> dict[str, pd.Series]:
    """Per other run, the disagreement with the selected run per test image (id -> fraction).

    An image counts for a pair when both runs scored it (``per_image.csv``) and the selected
    run's manifest lists it. Each truth and selected prediction is read once for all runs.
    """
    scored = set(selected.per_image["id"])
    ids = {d.run.name: scored & set(d.per_image["id"]) for d in others}
    values: dict[str, dict[str, float]] = {d.run.name: {} for d in others}
    for image_id, mask_path in zip(manifest.index, manifest["mask"], strict=True):
        wanted = [d for d in others if image_id in ids[d.run.name]]
        if not wanted:
            continue
        truth = load_mask(mask_path)
        pred = load_mask(predictions.mask_path(selected.run.test_predictions, image_id))
        for d in wanted:
            other = load_mask(predictions.mask_path(d.run.test_predictions, image_id))
            try:
                values[d.run.name][image_id] = disagreement(truth, pred, other, ignore_index)
            except ValueError as exc:
                raise ValueError(
                    f"image {image_id!r} of runs {selected.run.name!r} and {d.run.name!r}: {exc}"
                ) from None
    return {name: pd.Series(by_id, dtype=float) for name, by_id in values.items()}


def most_disagreeing(fractions: pd.Series | None, size: int) -> list[tuple[str, float]]:
    """The ``size`` (id, fraction) pairs of highest disagreement, ties by id; images where the
    runs agree on every labelled pixel, or that have none (NaN), are left out."""
    if fractions is None or size <= 0:
        return []
    ranked = sorted(
        ((str(image_id), float(f)) for image_id, f in fractions.items() if f > 0),
        key=lambda item: (-item[1], item[0]),
    )
    return ranked[:size]


def _comparisons(
    selected: _RunData,
    others: Sequence[_RunData],
    class_names: Sequence[str],
    options: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """For each other run: the paired difference (on the out-of-fold validation scores with
    ``options["on_crossval"]``, else on the test split) and the test disagreement gallery (none
    with a ``gallery_size`` of 0, which reads no mask)."""
    if not others:
        return []
    manifest = read_table(selected.run.test_manifest).set_index("id")
    size = options["gallery_size"]
    fractions = _disagreements(manifest, selected, others, options["ignore_index"]) if size else {}
    comparisons = []
    for d in others:
        difference = paired_difference(
            _paired_scores(selected, options["on_crossval"]),
            _paired_scores(d, options["on_crossval"]),
            seed=options["seed"],
            n_resamples=options["n_resamples"],
        )
        gallery = [
            {
                "id": image_id,
                "fraction": fraction,
                "src": _pair_composite(manifest.loc[image_id], selected, d, class_names, options),
            }
            for image_id, fraction in most_disagreeing(fractions.get(d.run.name), size)
        ]
        comparisons.append(
            {
                "name": d.run.name,
                "href": d.run.report_html,
                "difference": difference,
                "verdict": difference.verdict,
                "gallery": gallery,
            }
        )
    return comparisons


def _paired_scores(data: _RunData, on_crossval: bool) -> pd.DataFrame:
    """The per-image scores a run is paired on: out-of-fold validation or test."""
    return data.out_of_fold if on_crossval else data.per_image


def _pair_composite(
    entry: pd.Series,
    selected: _RunData,
    other: _RunData,
    class_names: Sequence[str],
    options: Mapping[str, Any],
) -> str:
    """Image | truth | selected run's prediction | other run's prediction, as a data URI."""
    image_id = entry.name
    image = np.asarray(load_rgb(entry["image"], None))  # as training read it (EXIF orientation)
    masks = [
        load_mask(entry["mask"]),
        load_mask(predictions.mask_path(selected.run.test_predictions, image_id)),
        load_mask(predictions.mask_path(other.run.test_predictions, image_id)),
    ]
    if image.shape[:2] != masks[0].shape:
        raise ValueError(
            f"size mismatch: image {entry['image']} {image.shape[:2]}, "
            f"truth {entry['mask']} {masks[0].shape}"
        )
    n, ignore_index = len(class_names), options["ignore_index"]
    sheet = panel_sheet(image, [colorize(mask, n, ignore_index) for mask in masks])
    return data_uri(png_bytes(sheet))
