"""Every file the workflow writes, each pattern spelled once: results, logs and benchmarks.

The rule files (rules/*.smk) declare these patterns as their ``output:``, ``log:`` and
``benchmark:``; :class:`segpipe.workflow.layout.Layout` fills them in for the files a run or a
model reads. A function's arguments default to the rule's wildcards (``model="{model}"``), so
one function gives both the rule's pattern and any job's file. Logs go to ``logs/<rule>/`` and
benchmarks to ``benchmarks/<rule>/``.

The ``{size}`` wildcard of rule preprocess says how a run's images are preprocessed:
:func:`preprocess_size` writes it, :func:`size_options` reads it back, :data:`SIZE_PATTERN`
constrains it.
"""

from __future__ import annotations

import os

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = "benchmarks"
# The folders only the pipeline writes (segpipe.outputs keeps them apart from what it reads).
WRITTEN = (RESULTS, LOGS, BENCHMARKS)


def log(rule: str, job: str) -> str:
    """The log of a rule's job, ``job`` naming it among the rule's (a pattern of wildcards)."""
    return f"{LOGS}/{rule}/{job}.log"


def benchmark(rule: str, job: str) -> str:
    """Snakemake's benchmark record of a rule's job (see :func:`log`)."""
    return f"{BENCHMARKS}/{rule}/{job}.tsv"


# Rule synthesize: the offline demo dataset's archives; rule download: the extracted dataset.
SYNTHESIZE_IMAGES = f"{RESULTS}/synthesize/images.tar.gz"
SYNTHESIZE_ANNOTATIONS = f"{RESULTS}/synthesize/annotations.tar.gz"
SYNTHESIZE_RESOURCES = f"{RESULTS}/synthesize/resources.json"
DOWNLOAD_DATASET = f"{RESULTS}/download/dataset"
DOWNLOAD_ARCHIVES = f"{RESULTS}/download/archives"
# Rule remap.
REMAP_MASKS = f"{RESULTS}/remap/masks"
REMAP_INDEX = f"{RESULTS}/remap/index.csv"
REMAP_QUARANTINE = f"{RESULTS}/remap/quarantine.csv"


def split_manifest(part: str, splitting: str = "{splitting}") -> str:
    """Rule split's manifest of ``part`` (train, val, test, or classes) of a split setting."""
    return f"{RESULTS}/split/{splitting}/{part}.csv"


def fold_dir(splitting: str = "{splitting}", k: object = "{k}", fold: object = "{fold}") -> str:
    """Rule folds' folder of fold ``fold`` of a split setting's k-fold cross-validation."""
    return f"{RESULTS}/folds/{splitting}/k{k}/fold{fold}"


def fold_manifest(
    part: str, splitting: str = "{splitting}", k: object = "{k}", fold: object = "{fold}"
) -> str:
    """Rule folds' manifest of ``part`` (train, val, classes) of a fold (:func:`fold_dir`)."""
    return f"{fold_dir(splitting, k, fold)}/{part}.csv"


# The {size} wildcard: an image size (squashed to size x size) or x<scale> (aspect kept).
SIZE_PATTERN = "[0-9]+|x[0-9.e+-]+"


def preprocess_size(image_size: int, scale: float | None) -> str:
    """The {size} of a run's arrays: ``"256"``, or ``"x0.5"`` with a scale (keep_aspect)."""
    return str(image_size) if scale is None else f"x{scale:g}"


def size_options(size: str) -> tuple[int, float | None]:
    """The (image_size, scale) a {size} stands for: (256, None), or (0, 0.5) for x0.5."""
    if size.startswith("x"):
        return 0, float(size[1:])
    return int(size), None


def preprocessed(
    split: str = "{split}", splitting: str = "{splitting}", size: str = "{size}"
) -> str:
    """Rule preprocess's array of a split, at one image size or scale."""
    return f"{RESULTS}/preprocess/{splitting}/{size}/{split}.npy"


def run_dir(model: str = "{model}") -> str:
    """Where a model's train, predict and evaluate outputs go, and a run's report."""
    return f"{RESULTS}/runs/{model}"


def train_file(name: str, model: str = "{model}") -> str:
    """File (or folder) ``name`` of rule train's outputs for a model: best.pt, last.pt,
    history.csv, model.json, model.onnx (rule export), resume/ (not an output)."""
    return f"{run_dir(model)}/train/{name}"


def predict_dir(model: str = "{model}") -> str:
    """Rule predict's folder of a model (segpipe.data.predictions: one folder per split)."""
    return f"{run_dir(model)}/predict"


def evaluated(
    name: str, rule: str = "evaluate", model: str = "{model}", split: str = "{split}"
) -> str:
    """File ``name`` of rule evaluate (or evaluate_no_tta) for a model's split."""
    return f"{run_dir(model)}/{rule}/{split}/{name}"


def crossval_file(name: str, run: str = "{run}") -> str:
    """File ``name`` of rule crossval's summary of a run with folds."""
    return f"{run_dir(run)}/crossval/{name}"


def report_file(name: str, run: str = "{run}") -> str:
    """File ``name`` of rule report for a run: report.html, figures/<figure>.png."""
    return f"{run_dir(run)}/report/{name}"


def infer_dir(run: str = "{run}") -> str:
    """Rule infer's predictions of infer.images with a run's model."""
    return f"{run_dir(run)}/infer"


COMPARE_DIR = f"{RESULTS}/compare"


def compare_file(name: str) -> str:
    """File ``name`` of rule compare (report.html, leaderboard.csv, figures/...), or infer/:
    rule infer_selected's predictions of infer.images with the run the comparison selects."""
    return f"{COMPARE_DIR}/{name}"


SEARCH_DIR = f"{RESULTS}/search"
# Checkpoint search_rung: bracket b's decision at rung r; search_select: the winner.
RUNG_FILE = f"{SEARCH_DIR}/bracket{{bracket}}/rung{{rung}}.csv"
SELECTION_FILE = f"{SEARCH_DIR}/winner.csv"
SEARCH_REPORT = f"{SEARCH_DIR}/report.html"
SEARCH_FIGURES = f"{SEARCH_DIR}/figures"


def rung_file(name: str, run: str = "{run}", rung: object = "{rung}") -> str:
    """File ``name`` of rule search_train's rung of a candidate (the same in every bracket):
    best.pt, last.pt, history.csv, model.json, resume/ (not an output)."""
    return f"{SEARCH_DIR}/{run}/rung{rung}/{name}"


def relative(path: str, start: str) -> str:
    """``path`` as a link from a page in folder ``start`` (a report linking another)."""
    return os.path.relpath(path, start)
