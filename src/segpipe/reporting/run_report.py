"""Self-contained HTML evaluation report: run summary, metrics, figures and example predictions.

:func:`build_report` reads the outputs of the train/predict/evaluate steps (:class:`ReportInputs`,
which also says which are required), draws the figures (:mod:`segpipe.reporting.plots`) and
renders ``templates/report.html.j2`` into one HTML file whose images are all inlined as base64
data URIs, so the file can be mailed or archived on its own.
"""

from __future__ import annotations

import errno
import importlib.metadata
import io
import logging
import math
import os
import platform
import resource
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import psutil
import yaml
from PIL import Image

from segpipe.data import predictions
from segpipe.data.colors import colorize, legend, overlay
from segpipe.data.dataset_layouts import SOURCE_ONLY_OPTIONS
from segpipe.data.images import load_rgb
from segpipe.data.masks import load_mask
from segpipe.data.split import carved_from_trainval
from segpipe.evaluation.crossval import SCORES
from segpipe.io import read_json, read_table, write_text
from segpipe.params import run_summary, tracked
from segpipe.reporting import plots
from segpipe.reporting.html import (
    data_uri,
    is_missing,
    panel_sheet,
    png_bytes,
    template_environment,
)

logger = logging.getLogger(__name__)

VERSIONED_PACKAGES = (
    "torch",
    "torchvision",
    "segmentation_models_pytorch",
    "snakemake",
    "numpy",
    "segpipe",
)
NOT_A_CHECKOUT = "not a git checkout"
ERROR_COLOR = (255, 0, 0)
QUARANTINE_MAX_ROWS = 500


@dataclass(frozen=True)
class ReportInputs:
    """What :func:`build_report` reads and how it shows it: one run's outputs and the report's
    options (rule report's script builds it from the job's input and params).

    Required (a missing file raises :class:`FileNotFoundError` naming the field):

    - ``metrics_json``, ``per_class_csv``, ``confusion_csv``, ``per_image_csv``: the test
      split's ``metrics.json``, ``per_class.csv``, ``confusion.csv`` and ``per_image.csv``, of
      the model the test sections show (``model``);
    - ``history_csv``: the training ``history.csv`` (with folds: fold 0's);
    - ``manifest_csv``: the test split's manifest (``id``, ``image``, ``mask``);
    - ``predictions_dir``: the test predictions, holding ``masks/<id>.png``;
    - ``class_names``: the class names by class id;
    - ``config``: the run's config; the summary shows the options its results depend on
      (:func:`segpipe.params.run_summary`), the "Configuration" section all of those as YAML;
    - ``benchmarks``: rule name -> Snakemake benchmark TSV; None or a missing file is shown as
      "n/a".

    Optional:

    - ``title``: the page's title; ``gallery_size``: the best, median and worst test images
      shown by per-image mean IoU (``report.*`` of the config);
    - ``val_metrics_json``: the val ``metrics.json``, "n/a" when the file is missing, no val row
      when None;
    - ``repo_dir``: the checkout whose git commit the summary shows;
    - ``ignore_index``: the mask value of ignored pixels (black in the galleries);
    - ``quarantine_csv``: the remap step's quarantine list (file, problem), shown as the files
      left out of the run;
    - ``class_presence_csv``: the split step's images per class and split, shown as the classes
      that no train or val mask holds;
    - ``index_csv``: the remap step's index: when the run honours the official lists
      (split.use_official) and no image is on a test list, the report warns that the test
      split was carved from the trainval list's images;
    - a run with k-fold cross-validation: ``fold_histories`` (every fold's ``history.csv`` in
      fold order; ``history_csv`` is fold 0's), ``crossval_json`` and ``crossval_folds_csv``
      (:func:`segpipe.evaluation.crossval.write_crossval`; required when given) and
      ``fold_class_presence_csvs`` (per fold, images per class of its train and val parts).
      The report then has a cross-validation section, its val row is the folds' mean, its
      learning curves overlay the folds, and the classes missing from a fold's part are listed
      per fold;
    - ``model``: the model the test sections show: "" (the run's only model), "ensemble" (the
      fold ensemble) or "fold<i>";
    - ``tta``: the flips the run predicts with; ``no_tta``: its scores without them (see
      :func:`tta_comparison`), shown side by side with those with them;
    - ``infer_dir``: the predictions of the infer.images folder
      (:func:`segpipe.inference.folder.predict_files`), a gallery of up to ``2 * gallery_size``
      of their overlays (drawn at ``overlay_alpha`` where the folder has none).
    """

    metrics_json: str | os.PathLike
    per_class_csv: str | os.PathLike
    confusion_csv: str | os.PathLike
    per_image_csv: str | os.PathLike
    history_csv: str | os.PathLike
    manifest_csv: str | os.PathLike
    predictions_dir: str | os.PathLike
    class_names: Sequence[str]
    config: Mapping[str, Any]
    benchmarks: Mapping[str, str | os.PathLike | None]
    title: str = "segpipe report"
    gallery_size: int = 3
    val_metrics_json: str | os.PathLike | None = None
    repo_dir: str | os.PathLike = "."
    ignore_index: int = 255
    quarantine_csv: str | os.PathLike | None = None
    class_presence_csv: str | os.PathLike | None = None
    index_csv: str | os.PathLike | None = None
    fold_histories: Sequence[str | os.PathLike] = ()
    crossval_json: str | os.PathLike | None = None
    crossval_folds_csv: str | os.PathLike | None = None
    model: str = ""
    fold_class_presence_csvs: Sequence[str | os.PathLike] = ()
    tta: Sequence[str] = ()
    no_tta: Mapping[str, Any] | None = None
    infer_dir: str | os.PathLike | None = None
    overlay_alpha: float = 0.5


def inputs_of_rule(
    files: Mapping[str, Any], options: Mapping[str, Any], **settings: Any
) -> ReportInputs:
    """The :class:`ReportInputs` of rule report: its named input ``files`` (as
    :meth:`segpipe.workflow.layout.Layout.report_inputs` names them: ``history`` lists the
    run's models' histories, the cross-validation files and the ``no_tta_*`` scores are there
    only for folds and predict.tta; ``predictions`` is the model's predict folder, whose test
    predictions the report shows), its ``report`` options, and the rest of its params as
    ``settings`` (fields of :class:`ReportInputs`: model, tta, class_names, ...)."""
    histories = list(files["history"])
    no_tta = None
    if settings.get("tta"):  # the scores without the predict.tta flips
        no_tta = {
            "metrics": files["no_tta_metrics"],
            "per_class": files["no_tta_per_class"],
            "val_metrics": list(files["tta_val_metrics"]),
            "val_metrics_no_tta": list(files["no_tta_val_metrics"]),
        }
    return ReportInputs(
        metrics_json=files["metrics"],
        val_metrics_json=files["val_metrics"],
        per_class_csv=files["per_class"],
        confusion_csv=files["confusion"],
        per_image_csv=files["per_image"],
        history_csv=histories[0],
        fold_histories=histories if files.get("crossval_metrics") else (),
        crossval_json=files.get("crossval_metrics"),
        crossval_folds_csv=files.get("crossval_folds"),
        manifest_csv=files["manifest"],
        predictions_dir=predictions.split_dir(files["predictions"], "test"),
        quarantine_csv=files["quarantine"],
        class_presence_csv=files["classes"],
        index_csv=files.get("index"),
        fold_class_presence_csvs=list(files["fold_classes"]),
        infer_dir=files.get("infer"),
        no_tta=no_tta,
        **options,
        **settings,
    )


def build_report(
    out_html: str | os.PathLike, figures_dir: str | os.PathLike, inputs: ReportInputs
) -> None:
    """Write ``confusion.png``, ``learning_curves.png``, ``per_class.png`` into ``figures_dir``
    and the HTML report of ``inputs`` to ``out_html``; nothing is written when a required input
    (see :class:`ReportInputs`) is missing."""
    _check_required(_required_paths(inputs))
    test_metrics = read_json(inputs.metrics_json)
    # Ids and class names as written: an image 'NA' or a class 'None' stays a string.
    per_class, per_image = read_table(inputs.per_class_csv), read_table(inputs.per_image_csv)
    confusion = read_table(inputs.confusion_csv, index_col="true").to_numpy()
    history = read_table(inputs.history_csv)
    histories = [read_table(path) for path in inputs.fold_histories or ()]
    manifest = read_table(inputs.manifest_csv).set_index("id")
    crossval = _crossval(inputs.crossval_json, inputs.crossval_folds_csv, histories)
    folds = crossval["folds"] if crossval else len(histories) or None
    shown = model_label(inputs.model, folds)
    class_names, config = inputs.class_names, inputs.config

    figures = _draw_figures(
        Path(figures_dir), confusion, class_names, history, histories, per_class
    )
    overall = _overall_rows(test_metrics, inputs.val_metrics_json, crossval, shown)

    context = {
        **_summary(inputs, history, histories),
        "overall": overall,
        "show_foreground": any(row.get("foreground_iou") is not None for row in overall),
        "model_label": shown,
        "crossval": crossval,
        "per_class": per_class.to_dict("records"),
        "figures": {name: data_uri(path.read_bytes()) for name, path in figures.items()},
        "legend": legend(class_names),
        "quarantine": _read_quarantine(inputs.quarantine_csv),
        "missing_classes": _missing_classes(inputs.class_presence_csv, pooled=bool(histories)),
        "fold_missing_classes": _fold_missing_classes(inputs.fold_class_presence_csvs),
        "carved_test": _carved_test(inputs.index_csv, config, len(manifest)),
        "galleries": _galleries(
            per_image,
            manifest,
            Path(inputs.predictions_dir),
            inputs.gallery_size,
            len(class_names),
            inputs.ignore_index,
        ),
        "tta": tta_comparison(inputs.tta, test_metrics, per_class, inputs.no_tta, folds),
        "infer": infer_gallery(
            inputs.infer_dir,
            2 * inputs.gallery_size,
            num_classes=len(class_names),
            alpha=inputs.overlay_alpha,
        )
        if inputs.infer_dir
        else None,
        "infer_images": (config.get("infer") or {}).get("images"),
        # Where the files a section cites lie (the rule's inputs): no path spelled twice.
        "files": {
            "infer": inputs.infer_dir,
            "quarantine": inputs.quarantine_csv,
            "classes": inputs.class_presence_csv,
            "fold_classes": list(inputs.fold_class_presence_csvs),
        },
    }
    write_text(out_html, template_environment().get_template("report.html.j2").render(context))
    logger.info("wrote report %s", out_html)


def _required_paths(inputs: ReportInputs) -> dict[str, str | os.PathLike | None]:
    """The input files that must exist, by field name (None: not given)."""
    names: tuple[str, ...] = ("metrics_json", "per_class_csv", "confusion_csv", "per_image_csv")
    names += (
        "history_csv",
        "manifest_csv",
        "predictions_dir",
        "crossval_json",
        "crossval_folds_csv",
    )
    return {
        **{name: getattr(inputs, name) for name in names},
        **{f"fold_histories[{i}]": path for i, path in enumerate(inputs.fold_histories or ())},
    }


def _summary(
    inputs: ReportInputs, history: pd.DataFrame, histories: Sequence[pd.DataFrame]
) -> dict[str, Any]:
    """The run summary: run, dataset, the options results depend on (:func:`run_summary`),
    versions, git commit, training and job durations."""
    config = run_summary(inputs.config)
    return {
        "title": inputs.title,
        "run_name": config.get("run_name", "n/a"),
        "dataset": dataset_fields(config.get("dataset")),
        "config_yaml": yaml.safe_dump(dict(config), sort_keys=True, default_flow_style=False),
        "versions": package_versions(),
        "git": git_revision(inputs.repo_dir),
        "training": _training(history, histories),
        "benchmarks": [
            *({"rule": rule, **_read_benchmark(path)} for rule, path in inputs.benchmarks.items()),
            own_benchmark("report"),
        ],
    }


def _check_required(paths: Mapping[str, str | os.PathLike | None]) -> None:
    """Raise :class:`FileNotFoundError` naming the first given input (not None) that is missing."""
    for name, path in paths.items():
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(errno.ENOENT, f"report input {name} not found", str(path))


def _draw_figures(
    figures_dir: Path,
    confusion: np.ndarray,
    class_names: Sequence[str],
    history: pd.DataFrame,
    fold_histories: Sequence[pd.DataFrame],
    per_class: pd.DataFrame,
) -> dict[str, Path]:
    """Draw the confusion matrix, the learning curves (the folds' overlaid, given) and the
    per-class scores into ``figures_dir``; returns their paths by name."""
    paths = {
        "confusion": figures_dir / "confusion.png",
        "learning_curves": figures_dir / "learning_curves.png",
        "per_class": figures_dir / "per_class.png",
    }
    plots.plot_confusion(confusion, class_names, paths["confusion"])
    if fold_histories:
        plots.plot_runs_learning_curves(
            {f"fold {i}": h for i, h in enumerate(fold_histories)},
            paths["learning_curves"],
            title="Learning curves of the folds",
        )
    else:
        plots.plot_learning_curves(history, paths["learning_curves"])
    plots.plot_per_class(per_class, paths["per_class"])
    return paths


def model_label(model: str, folds: int | None) -> str:
    """How the report names the model its test sections show: "" for the run's only model,
    the fold ensemble with its number of folds, or "fold <i>"."""
    if model == "ensemble":
        count = f"{folds} folds" if folds else "the folds"
        return f"fold ensemble (mean probabilities of {count})"
    if model.startswith("fold") and model[4:].isdigit():
        return f"fold {int(model[4:])}"
    return model


def _overall_rows(
    test_metrics: Mapping[str, Any],
    val_metrics_json: str | os.PathLike | None,
    crossval: Mapping[str, Any] | None,
    model: str,
) -> list[dict[str, Any]]:
    """Rows of the overall metrics table: test (of ``model``), then val; with folds the val row
    is the mean over the folds of their validation scores."""
    rows = [{**test_metrics, "split": f"test — {model}" if model else "test"}]
    if crossval is not None:
        val = crossval["summary"]["val"]
        means = {score: val.get(score, {}).get("mean") for score in SCORES}
        rows.append(
            {**means, "n_images": None, "split": f"val (mean of {crossval['folds']} folds)"}
        )
    elif val_metrics_json is not None:
        rows.append({**_read_optional_json(val_metrics_json), "split": "val"})
    return rows


def _crossval(
    metrics_json: str | os.PathLike | None,
    folds_csv: str | os.PathLike | None,
    histories: Sequence[pd.DataFrame],
) -> dict[str, Any] | None:
    """The cross-validation section: the number of folds, one row per fold model then the
    ensemble (with each fold's best epoch from its history), the mean ± std over the folds and
    the per-class IoU likewise; None without a summary."""
    if metrics_json is None:
        return None
    summary = read_json(metrics_json)
    rows = _crossval_rows(read_table(folds_csv, text=("model",)), histories) if folds_csv else []
    per_class = summary["val"].get("per_class_iou", {})
    return {
        "folds": summary["folds"],
        "summary": summary,
        "rows": rows,
        "per_class": [
            {
                "class_name": name,
                "val": value,
                "test": summary["test"].get("per_class_iou", {}).get(name),
            }
            for name, value in per_class.items()
        ],
        "show_foreground": any(not is_missing(row["test_foreground_iou"]) for row in rows),
    }


def _crossval_rows(folds: pd.DataFrame, histories: Sequence[pd.DataFrame]) -> list[dict[str, Any]]:
    """The rows of ``folds.csv`` as table rows: the fold models in fold order with their best
    epoch, then the fold ensemble."""
    rows = []
    for record in folds.to_dict("records"):
        ensemble = record["model"] == "ensemble"
        fold = None if ensemble or is_missing(record["fold"]) else int(record["fold"])
        best = None
        if fold is not None and fold < len(histories):
            best = training_summary(histories[fold])["best_epoch"]
        label = "fold ensemble" if ensemble else record["model"] if fold is None else f"fold {fold}"
        rows.append(
            {**record, "label": label, "ensemble": ensemble, "fold": fold, "best_epoch": best}
        )
    return sorted(
        rows, key=lambda row: (row["ensemble"], math.inf if row["fold"] is None else row["fold"])
    )


def tta_comparison(
    tta: Sequence[str],
    test_metrics: Mapping[str, Any],
    per_class: pd.DataFrame,
    no_tta: Mapping[str, Any] | None,
    folds: int | None = None,
) -> dict[str, Any] | None:
    """The scores with the ``tta`` flips beside those without; None without tta.

    ``no_tta`` holds ``metrics`` and ``per_class`` (the test metrics.json and per_class.csv
    without the flips, of the model the test sections show), and the val metrics.json of each
    trained model with the flips (``val_metrics``) and without (``val_metrics_no_tta``): the
    val row is their mean, over the ``folds`` in a run with folds."""
    if not tta:
        return None
    if no_tta is None:
        raise ValueError(f"predict.tta {list(tta)}: the scores without the flips are missing")
    test = read_json(no_tta["metrics"])
    without = read_table(no_tta["per_class"]).set_index("class_name")["iou"].to_dict()
    val_label = f"val (mean of {folds} folds)" if folds else "val"
    return {
        "flips": list(tta),
        "views": 2 ** len(tta),
        "rows": [
            {"split": "test", "with": test_metrics, "without": test},
            {
                "split": val_label,
                "with": _mean_scores(no_tta["val_metrics"]),
                "without": _mean_scores(no_tta["val_metrics_no_tta"]),
            },
        ],
        "per_class": [
            {"class_name": name, "with": iou, "without": without.get(name)}
            for name, iou in zip(per_class["class_name"], per_class["iou"], strict=True)
        ],
    }


def _mean_scores(paths: Sequence[str | os.PathLike]) -> dict[str, float | None]:
    """The mean of each score over the metrics.json files (missing where none has it)."""
    metrics = [read_json(path) for path in paths]
    means = {}
    for score in ("pixel_accuracy", "mean_iou", "mean_dice"):
        values = [m[score] for m in metrics if not is_missing(m.get(score))]
        means[score] = sum(values) / len(values) if values else None
    return means


INFER_THUMBNAIL = (256, 192)


def infer_gallery(
    infer_dir: str | os.PathLike, size: int, *, num_classes: int, alpha: float = 0.5
) -> dict[str, Any]:
    """The first ``size`` overlays of a folder's predictions (:func:`segpipe.inference.folder.predict_files`,
    in the order of its ``summary.csv``) as small JPEG data URIs with their file names, the
    number of files and the skipped ones with why. A folder written without overlays
    (predict.overlays ``none``) has each drawn from its image and mask (``num_classes``
    colours at ``alpha``, :func:`segpipe.data.colors.overlay`)."""
    folder = Path(infer_dir)
    summary = read_table(predictions.summary_path(folder), text=True)
    predicted = summary[summary["status"] == "predicted"]
    items = []
    for row in predicted.head(size).to_dict("records"):
        name = predictions.name_of_mask(row["output"])
        thumbnail = _overlay_of(folder, name, Path(row["file"]), num_classes, alpha)
        thumbnail.thumbnail(INFER_THUMBNAIL)
        buffer = io.BytesIO()
        thumbnail.save(buffer, format="JPEG", quality=85)
        shown = PurePosixPath(name).parent / Path(row["file"]).name
        items.append({"name": shown.as_posix(), "src": data_uri(buffer.getvalue(), "jpeg")})
    skipped = summary[summary["status"] == "skipped"]
    return {
        "items": items,
        "total": len(summary),
        "predicted": len(predicted),
        "skipped": [
            {"name": Path(row["file"]).name, "reason": row["reason"]}
            for row in skipped.to_dict("records")
        ],
    }


def _overlay_of(
    folder: Path, name: str, image: Path, num_classes: int, alpha: float
) -> Image.Image:
    """The overlay of prediction ``name`` of ``folder``: its file, else drawn from the
    ``image`` predicted and its mask."""
    path = predictions.overlay_path(folder, name)
    if path.is_file():
        with Image.open(path) as shaded:
            return shaded.convert("RGB")
    rgb = np.asarray(load_rgb(image))  # predicted, so readable
    mask = load_mask(predictions.mask_path(folder, name))
    return Image.fromarray(overlay(rgb, mask, num_classes, alpha))


def package_versions() -> dict[str, str]:
    """Python's version and the installed versions of the packages the pipeline depends on."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_revision(repo_dir: str | os.PathLike) -> str:
    """The commit checked out in ``repo_dir``, with " (dirty)" for uncommitted changes.

    Returns :data:`NOT_A_CHECKOUT` when git is missing or ``repo_dir`` is not inside a repository
    with at least one commit.
    """
    try:
        commit = _git(repo_dir, "rev-parse", "HEAD")
        changes = _git(repo_dir, "status", "--porcelain")
    except (OSError, subprocess.SubprocessError) as exc:
        logger.info("no git revision for %s: %s", repo_dir, getattr(exc, "stderr", None) or exc)
        return NOT_A_CHECKOUT
    return f"{commit} (dirty)" if changes else commit


def _git(repo_dir: str | os.PathLike, *args: str) -> str:
    """Run a git command in ``repo_dir`` and return its stripped standard output."""
    result = subprocess.run(
        ["git", *args], cwd=repo_dir, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()


def _read_optional_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in ``path``, or an empty dict (rendered as "n/a") if the file is missing."""
    if not Path(path).is_file():
        logger.warning("optional report input %s is missing; shown as n/a", path)
        return {}
    return read_json(path)


def _read_benchmark(path: str | os.PathLike | None) -> dict[str, float | None]:
    """Wall-clock seconds and peak RSS (MB) from a Snakemake benchmark TSV, averaged over repeats.

    A missing or unreadable file gives ``None`` for both, rendered as "n/a".
    """
    if path is None or not Path(path).is_file():
        logger.warning("benchmark file %s is missing; shown as n/a", path)
        return {"seconds": None, "max_rss": None}
    try:
        table = pd.read_csv(path, sep="\t")  # numbers only; Snakemake writes NA for unmeasured
        seconds = pd.to_numeric(table["s"], errors="coerce").mean()
        max_rss = pd.to_numeric(table["max_rss"], errors="coerce").mean()
    except (ValueError, KeyError) as exc:
        logger.warning("cannot read benchmark file %s (%s); shown as n/a", path, exc)
        return {"seconds": None, "max_rss": None}
    return {"seconds": seconds, "max_rss": max_rss}


def _read_quarantine(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """Rows of the remap step's quarantine CSV (file, problem); None when no file was given."""
    if path is None:
        return None
    if not Path(path).is_file():
        logger.warning("quarantine list %s is missing; not shown", path)
        return {"rows": [], "total": None, "shown": 0}
    table = read_table(path, text=True)
    rows = table[["file", "problem"]].head(QUARANTINE_MAX_ROWS).to_dict("records")
    return {"rows": rows, "total": len(table), "shown": len(rows)}


def _carved_test(
    index_csv: str | os.PathLike | None, config: Mapping[str, Any], test: int
) -> dict[str, Any] | None:
    """The images of the trainval list and of the test split when the test split was carved
    from the trainval list (:func:`segpipe.data.split.carved_from_trainval`); else None."""
    split = config.get("split") or {}
    if index_csv is None or not split.get("use_official", True):
        return None
    listed = carved_from_trainval(read_table(index_csv))
    if not listed:
        return None
    return {"listed": listed, "test": test, "fraction": split.get("test_fraction")}


def _missing_classes(
    path: str | os.PathLike | None, *, pooled: bool = False
) -> list[dict[str, Any]] | None:
    """Classes that no mask of the train or val split holds, with the splits they miss from;
    None when no table was given. With ``pooled`` (a run with folds, which trains and validates
    on the train+val pool) only the classes that neither holds."""
    if path is None:
        return None
    missing = _missing_rows(read_table(path))
    if pooled:
        missing = [row for row in missing if len(row["splits"]) == 2]
    return missing


def _missing_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a class presence table whose class no train or val image holds: class name,
    the splits it misses from and the images per split."""
    missing = []
    for row in table.to_dict("records"):
        splits = [s for s in ("train", "val") if s in row and row[s] == 0]
        if splits:
            counts = {s: int(row[s]) for s in ("train", "val", "test") if s in row}
            missing.append({"class_name": row["class_name"], "splits": splits, "counts": counts})
    return missing


def _fold_missing_classes(paths: Sequence[str | os.PathLike] | None) -> list[dict[str, Any]]:
    """Per fold (in fold order), the classes that no mask of its train or val part holds."""
    return [
        {"fold": fold, **row}
        for fold, path in enumerate(paths or [])
        for row in _missing_rows(read_table(path))
    ]


def dataset_fields(dataset: Any) -> list[tuple[str, str]]:
    """``config["dataset"]`` as (label, value) rows of the run summary: its name first, then each
    option that is set and that results depend on (not :data:`segpipe.params.UNTRACKED_OPTIONS`),
    a nested mapping as ``key: value`` pairs of its set entries and a list joined by commas.
    Options that only another source reads (:data:`segpipe.data.dataset_layouts.SOURCE_ONLY_OPTIONS`)
    are left out."""
    if dataset is None:
        return [("Dataset", "n/a")]
    if not isinstance(dataset, Mapping):
        return [("Dataset", str(dataset))]
    fields = tracked("dataset", dataset)
    rows = [("Dataset", str(fields.pop("name", None) or fields.get("source", "n/a")))]
    source = fields.get("source")
    for key, value in fields.items():
        if is_set(value) and SOURCE_ONLY_OPTIONS.get(key, source) == source:
            rows.append((f"Dataset {key.replace('_', ' ')}", _field_text(value)))
    return rows


def is_set(value: Any) -> bool:
    """Whether an option has a value to show: not None nor an empty string, and for a mapping
    or list, one of its entries has (0 and false are values)."""
    if isinstance(value, Mapping):
        return any(is_set(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_set(v) for v in value)
    return value is not None and value != ""


def _field_text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_field_text(v)}" for k, v in value.items() if is_set(v))
    if isinstance(value, list | tuple):
        return ", ".join(_field_text(v) for v in value if is_set(v))
    return str(value)


def own_benchmark(rule: str) -> dict[str, Any]:
    """This process's wall time so far and peak RSS (MB), as a row of the rule durations table:
    a job cannot read its own Snakemake benchmark, which is written after it ends."""
    process = psutil.Process()
    return {
        "rule": f"{rule} (this job, until the page was written)",
        "seconds": time.time() - process.create_time(),
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def training_summary(history: pd.DataFrame) -> dict[str, Any]:
    """Epoch count, total time, mean throughput and the best validation mIoU from the history."""
    summary: dict[str, Any] = {
        "epochs": len(history),
        "seconds": history["seconds"].sum(),
        "images_per_s": history["images_per_s"].mean(),
        "best_val_miou": None,
        "best_epoch": None,
    }
    if history["val_miou"].notna().any():
        best = history.loc[history["val_miou"].idxmax()]
        summary["best_val_miou"] = best["val_miou"]
        summary["best_epoch"] = int(best["epoch"])
    return summary


def _training(history: pd.DataFrame, fold_histories: Sequence[pd.DataFrame]) -> dict[str, Any]:
    """The run summary's training figures: :func:`training_summary` of ``history``, or with
    folds the epochs and time summed over the folds and the throughput averaged over all their
    epochs (each fold's best epoch is in the cross-validation table)."""
    if not fold_histories:
        return {**training_summary(history), "folds": None}
    summaries = [training_summary(h) for h in fold_histories]
    return {
        "epochs": sum(s["epochs"] for s in summaries),
        "epochs_per_fold": [s["epochs"] for s in summaries],
        "seconds": sum(s["seconds"] for s in summaries),
        "images_per_s": pd.concat(fold_histories)["images_per_s"].mean(),
        "best_val_miou": None,
        "best_epoch": None,
        "folds": len(summaries),
    }


def _galleries(
    per_image: pd.DataFrame,
    manifest: pd.DataFrame,
    predictions_dir: Path,
    size: int,
    num_classes: int,
    ignore_index: int,
) -> list[dict[str, Any]]:
    """The best, median and worst ``size`` test images by mean IoU, as captioned composites.

    With fewer than ``3 * size`` scored images the three selections overlap.
    """
    ranked = (
        per_image.dropna(subset=["mean_iou"])
        .sort_values("mean_iou", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    size = min(size, len(ranked))
    middle = (len(ranked) - size) // 2
    selections = {
        "Best": ranked.iloc[:size],
        "Median": ranked.iloc[middle : middle + size],
        "Worst": ranked.iloc[len(ranked) - size :].iloc[::-1],
    }
    galleries = []
    for name, rows in selections.items():
        items = []
        for image_id, miou in zip(rows["id"], rows["mean_iou"], strict=True):
            if image_id not in manifest.index:
                raise KeyError(f"image {image_id!r} from per_image.csv is not in the manifest")
            entry = manifest.loc[image_id]
            composite = _composite(
                Path(entry["image"]),
                Path(entry["mask"]),
                predictions.mask_path(predictions_dir, image_id),
                num_classes,
                ignore_index,
            )
            items.append({"id": image_id, "miou": miou, "src": data_uri(png_bytes(composite))})
        galleries.append({"name": name, "items": items})
    return galleries


def _composite(
    image_path: Path, truth_path: Path, pred_path: Path, num_classes: int, ignore_index: int
) -> Image.Image:
    """Image | truth | prediction | error map side by side (:func:`~segpipe.reporting.html.panel_sheet`).

    The error map is the image in dimmed grey with wrongly predicted pixels in red and ignored
    pixels in black.
    """
    image = np.asarray(
        load_rgb(image_path, None)
    )  # as remap and training read it (EXIF orientation)
    truth = load_mask(truth_path)
    pred = load_mask(pred_path)
    if not image.shape[:2] == truth.shape == pred.shape:
        raise ValueError(
            f"size mismatch: image {image_path} {image.shape[:2]}, truth {truth_path} "
            f"{truth.shape}, prediction {pred_path} {pred.shape}"
        )

    ignored = truth == ignore_index
    grey = (image.mean(axis=2) * 0.45).astype(np.uint8)
    error = np.repeat(grey[..., None], 3, axis=2)
    error[(pred != truth) & ~ignored] = ERROR_COLOR
    error[ignored] = 0
    masks = [colorize(truth, num_classes, ignore_index), colorize(pred, num_classes, ignore_index)]
    return panel_sheet(image, [*masks, error])
