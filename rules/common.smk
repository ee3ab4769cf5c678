"""Config validation and helpers shared by the rule files."""

import functools
import os
import re
from pathlib import Path

from snakemake.io import contains_wildcard

from segpipe.workflow.config import (
    ConfigError,
    dataset_layout,
    dataset_options,
    load_schema,
    validate_config,
)
from segpipe.data.layouts import dataset_files
from segpipe.data.download import OXFORD_PETS_RESOURCES
from segpipe.workflow.experiments import expand_runs
from segpipe.params import Untracked, run_summary, tracked, untracked


def _replace_whole_options_from_command_line(cfg):
    """Table-like options given in a --configfile/--config replace config.yaml's whole.

    Snakemake merges dicts key by key, which would silently add config.yaml's trimap values to
    a user's table, or config.yaml's rotation and colour jitter to an example's flips-only
    augmentation. remap.table and remap.colors are alternatives: when either is given, both come
    from the command line only.
    """
    override = workflow.config_settings.overwrite_config or {}
    remap = override.get("remap") or {}
    if "table" in remap or "colors" in remap:
        cfg.setdefault("remap", {})
        for key in ("table", "colors"):
            cfg["remap"].pop(key, None)
            if remap.get(key) is not None:
                cfg["remap"][key] = remap[key]
    for section, key in (("train", "augment"), ("dataset", "split_lists")):
        value = (override.get(section) or {}).get(key)
        if value is not None:
            cfg.setdefault(section, {})[key] = value


_replace_whole_options_from_command_line(config)
_schema = load_schema(Path(workflow.basedir) / "config/schema.yaml")


def _validate(cfg):
    # Jobs on a cluster node: the submitting process checked the model names already.
    return validate_config(cfg, _schema, check_models=not workflow.remote_exec)


try:
    _validated = _validate(config)
    # The runs the config declares (experiments, grid), or the one run named by run_name.
    RUNS = {run.name: run for run in expand_runs(config, _validated, _validate)}
except ConfigError as exc:
    raise ValueError(str(exc)) from None
config.clear()
config.update(_validated)
# Split settings of the runs: results/split/<splitting>/, computed once each.
SPLITTINGS = {run.splitting: run.split for run in RUNS.values()}
# The runs' models (results/runs/<model>/): a run, its folds <run>/fold<i>, its <run>/ensemble.
MODELS = {model.name: model for run in RUNS.values() for model in run.models}
# Experiments and grids compare their runs in results/compare/.
COMPARE = config["experiments"] is not None or config["grid"] is not None

SOURCE = config["dataset"]["source"]


def _check_infer_is_shared():
    """infer.images belongs to the whole config: with experiments, the run the comparison
    selects predicts it."""
    for run in RUNS.values():
        if run.config["infer"] != config["infer"]:
            raise ValueError(
                f"invalid config:\n  run '{run.name}': option 'infer.images' is not an option "
                "of a run; the comparison predicts the folder with the run it selects"
            )


def _infer_folder_problem(folder):
    """Why infer.images cannot be predicted as given, or None."""
    path = Path(folder)
    if not path.exists():
        return f"folder '{folder}' not found"
    if not path.is_dir():
        return f"'{folder}' is a file, not a folder of images"
    results = Path("results").resolve()
    if path.resolve() == results or path.resolve() in results.parents:
        return f"folder '{folder}' holds results/, where the predictions go; move the images"
    return None


def _infer_files():
    """The files of infer.images as segpipe predict finds them (recursively, hidden files left
    out), checked before any job runs; none when it is null."""
    folder = config["infer"]["images"]
    if folder is None:
        return []
    from segpipe.inference.folder import InferError, OutputClashError, find_images

    problem = _infer_folder_problem(folder)
    try:
        files = [] if problem else find_images([folder])
    except OutputClashError as exc:
        problem = str(exc)
    except InferError:
        problem = f"folder '{folder}' holds no files"
    if problem:
        raise ValueError(f"invalid config:\n  config option 'infer.images': {problem}")
    return [str(path) for path in files]


_check_infer_is_shared()
# The images of infer.images, predicted with the trained model (rules/infer.smk); none when null.
INFER_IMAGES = _infer_files()


wildcard_constraints:
    split="train|val|test",
    run="|".join(re.escape(name) for name in RUNS),
    model="|".join(re.escape(name) for name in MODELS),
    splitting="|".join(re.escape(name) for name in SPLITTINGS),
    size="[0-9]+|x[0-9.e+-]+",
    k="[0-9]+",
    fold="[0-9]+",


def res(rule_name, key):
    """Threads / mem_mb / runtime of a rule, from config['resources']."""
    return config["resources"][rule_name][key]


def run_res(rule_name, key):
    """Threads / mem_mb / runtime / gpu_model of a per-run rule, from the run's resources."""
    return lambda wildcards: RUNS[wildcards.run].config["resources"][rule_name][key]


def model_run(model):
    """The run a model (a run's, a fold's, an ensemble) belongs to."""
    return RUNS[MODELS[model].run]


def model_res(rule_name, key):
    """Threads / mem_mb / runtime / gpu_model of a per-model rule, from its run's resources."""
    return lambda wildcards: model_run(wildcards.model).config["resources"][rule_name][
        key
    ]


def run_option(*keys):
    """A param of a per-run or per-model rule: the run's config at ``keys`` (a section, or an
    option)."""

    def get(wildcards):
        run = wildcards.get("run") or MODELS[wildcards.model].run
        value = RUNS[run].config
        for key in keys:
            value = value[key]
        return value

    return get


def run_dir(model):
    """Where a model's train, predict and evaluate outputs go, and a run's report."""
    return f"results/runs/{model}"


def split_manifest(run, split):
    """The manifest of ``split`` in the split setting the run uses (rule split)."""
    return f"results/split/{RUNS[run].splitting}/{split}.csv"


def fold_dir(run, fold):
    """Where fold ``fold`` of the run's k-fold cross-validation is listed (rule folds)."""
    run = RUNS[run]
    return f"results/folds/{run.splitting}/k{run.folds}/fold{fold}"


def model_manifest(model, split):
    """The images a model trains on (train), selects its epoch on (val) or is tested on: a
    fold's own train and val parts of the pool (rule folds), else the run's split."""
    model = MODELS[model]
    if model.fold is None or split == "test":
        return split_manifest(model.run, split)
    return f"{fold_dir(model.run, model.fold)}/{split}.csv"


def preprocess_size(run):
    """How the run's images are preprocessed: to the image size (squash), or x<scale>
    (keep_aspect: x0.5 is half the size, aspect ratio kept)."""
    train = RUNS[run].config["train"]
    if train["resize"] == "keep_aspect":
        return f"x{train['image_scale']:g}"
    return str(train["image_size"])


def preprocessed(run, split):
    """The array of ``split`` at the run's image size or scale (rule preprocess)."""
    return (
        f"results/preprocess/{RUNS[run].splitting}/{preprocess_size(run)}/{split}.npy"
    )


def model_arrays(model, split):
    """The arrays (rule preprocess) holding the images of ``model_manifest(model, split)``, and
    the manifests they were written from: the test array, or the train and val arrays of the
    split, which a fold's train and val parts are drawn from (segpipe.data.preprocess.select_rows).
    """
    run = MODELS[model].run
    parts = ["test"] if split == "test" else ["train", "val"]
    return {
        "arrays": [preprocessed(run, part) for part in parts],
        "array_manifests": [split_manifest(run, part) for part in parts],
    }


def uses_tta(model):
    """Whether a model's run predicts with flips (predict.tta): then also without them."""
    return bool(model_run(model).config["predict"]["tta"])


def evaluations():
    """Every model's metrics on each split it is evaluated on, with the configured flips and,
    for a run with predict.tta, without them (evaluate_no_tta)."""
    files = []
    for model in MODELS:
        rule_names = (
            ["evaluate", "evaluate_no_tta"] if uses_tta(model) else ["evaluate"]
        )
        files += [
            f"{run_dir(model)}/{rule_name}/{split}/metrics.json"
            for rule_name in rule_names
            for split in MODELS[model].splits
        ]
    return files


def predict_options(tta=True):
    """The predict options of a model's run that change its predictions: overlay_alpha, the
    tta flips (left out when there are none, and with ``tta`` False, for predict_no_tta) and
    sliding windows' mode and overlap (left out for the default whole-image mode). batch_size
    reaches the job untracked (segpipe.params)."""

    def get(wildcards):
        options = run_option("predict")(wildcards)
        flips = options["tta"] if tta else []
        sliding = options["mode"] == "sliding"
        return {
            "overlay_alpha": options["overlay_alpha"],
            **({"tta": flips} if flips else {}),
            **({"mode": "sliding", "overlap": options["overlap"]} if sliding else {}),
        }

    return get


def checkpoints(model):
    """The best checkpoints a model predicts with: its own, or its fold members' (ensemble)."""
    members = MODELS[model].members or (model,)
    return [f"{run_dir(member)}/train/best.pt" for member in members]


def verbatim(value):
    """A param that Snakemake passes as it is: a plain string (or list of strings) param is
    formatted with the job's wildcards, so the braces of a dataset root or a class name such as
    `data {v1}` would fail the DAG with a WildcardError."""
    return lambda wildcards: value


def dataset_dir():
    """Where the dataset lives: the download output, or the user's own folder."""
    if SOURCE == "folder":
        return config["dataset"]["root"]
    return "results/download/dataset"


@functools.cache
def _dataset_files():
    """The files of a user's folder that remap reads (see segpipe.data.layouts.DatasetFiles)."""
    dataset = config["dataset"]
    return dataset_files(
        dataset_layout(dataset),
        dataset["root"],
        images_dir=dataset["images_dir"],
        masks_dir=dataset["masks_dir"],
        split_lists=dataset["split_lists"],
    )


def dataset_input():
    """Remap's input: the download rule's directory, or the newest file of a user's folder (any
    edit or addition below the root makes it newer than remap's outputs).

    A path with a `{name}` in it (a file `{x}.png`, a root `data {v1}`) cannot be an input:
    Snakemake takes it for a wildcard, escaped as `{{x}}` or not. Its modification time goes
    into dataset_fingerprint instead.
    """
    if SOURCE != "folder":
        return dataset_dir()
    return [p for p in _dataset_files().newest() if not contains_wildcard(p)]


def dataset_fingerprint():
    """Names and sizes of a user's folder's files, a param of remap: a removal or a rename
    reruns it too; and the modification time of a newest file that cannot be remap's input
    (see dataset_input). Downloads: their archives' checksums, in the download rule's params.
    """
    if SOURCE != "folder":
        return None
    files = _dataset_files()
    unnamed = [p for p in files.newest() if contains_wildcard(p)]
    stamps = "".join(
        f", newest file modified at {os.stat(p).st_mtime_ns} ns" for p in unnamed
    )
    return files.fingerprint() + stamps


def download_resources():
    """Archives to fetch for oxford_pets (config urls, else the official ones); synthetic reads
    its resources.json, written by rule synthesize."""
    if SOURCE == "oxford_pets":
        return config["dataset"].get("urls") or OXFORD_PETS_RESOURCES
    return []


def run_benchmarks(run):
    """Job name -> Snakemake benchmark file of every job a run's report depends on."""
    size = preprocess_size(run)
    run = RUNS[run]
    jobs = {}
    if SOURCE == "synthetic":
        jobs["synthesize"] = "benchmarks/synthesize/synthesize.tsv"
    if SOURCE != "folder":
        jobs["download"] = "benchmarks/download/download.tsv"
    jobs["remap"] = "benchmarks/remap/remap.tsv"
    jobs["split"] = f"benchmarks/split/{run.splitting}.tsv"
    for fold in range(run.folds or 0):
        jobs[f"folds (fold {fold})"] = (
            f"benchmarks/folds/{run.splitting}/k{run.folds}/fold{fold}.tsv"
        )
    for split in ("train", "val", "test"):
        jobs[f"preprocess ({split})"] = (
            f"benchmarks/preprocess/{run.splitting}/{size}/{split}.tsv"
        )
    for model in run.models:
        label = model.name.removeprefix(run.name).strip("/")
        label = f"{label}: " if label else ""
        if model.trained:
            jobs[f"{label}train"] = f"benchmarks/train/{model.name}.tsv"
        rule_names = ["predict", "evaluate"]
        if uses_tta(model.name):
            rule_names += ["predict_no_tta", "evaluate_no_tta"]
        for rule_name in rule_names:
            for split in model.splits:
                jobs[f"{label}{rule_name} ({split})"] = (
                    f"benchmarks/{rule_name}/{model.name}/{split}.tsv"
                )
    if run.folds:
        jobs["crossval"] = f"benchmarks/crossval/{run.name}.tsv"
    if INFER_IMAGES and not COMPARE:
        jobs["infer"] = f"benchmarks/infer/{run.name}.tsv"
    return jobs


def crossval_inputs(run):
    """The inputs of rule crossval, each fold's val and test scores, in fold order, and the fold
    ensemble's test scores when the run has one."""
    run = RUNS[run]
    folds = [model.name for model in run.models if model.trained]
    files = {
        "val_metrics": [f"{run_dir(m)}/evaluate/val/metrics.json" for m in folds],
        "test_metrics": [f"{run_dir(m)}/evaluate/test/metrics.json" for m in folds],
        "val_per_image": [f"{run_dir(m)}/evaluate/val/per_image.csv" for m in folds],
    }
    if run.primary.members:
        files["ensemble_test_metrics"] = (
            f"{run_dir(run.primary.name)}/evaluate/test/metrics.json"
        )
    return files


def crossval_outputs(run):
    """The cross-validation summary of a run with folds (rule crossval); none without."""
    if not RUNS[run].folds:
        return {}
    out = f"{run_dir(run)}/crossval"
    return {
        "crossval_metrics": f"{out}/metrics.json",
        "crossval_folds": f"{out}/folds.csv",
        "crossval_per_image": f"{out}/per_image.csv",
    }


def fold_classes(run):
    """Images per class in each fold's train and val parts (rule folds); none without folds."""
    return [
        f"{fold_dir(run, fold)}/classes.csv" for fold in range(RUNS[run].folds or 0)
    ]


def report_inputs(run):
    """The inputs of rule report for a run, the test outputs of the model that stands for it
    (segpipe.workflow.experiments.Run.primary), its training history (each fold's, with folds), and
    with folds the cross-validation summary."""
    primary, first = RUNS[run].primary.name, RUNS[run].models[0].name
    test, val = f"{run_dir(primary)}/evaluate/test", f"{run_dir(first)}/evaluate/val"
    trained = [m.name for m in RUNS[run].models if m.trained]
    return {
        "metrics": f"{test}/metrics.json",
        "val_metrics": f"{val}/metrics.json",
        "per_class": f"{test}/per_class.csv",
        "confusion": f"{test}/confusion.csv",
        "per_image": f"{test}/per_image.csv",
        "history": [f"{run_dir(m)}/train/history.csv" for m in trained],
        "manifest": split_manifest(run, "test"),
        "predictions": f"{run_dir(primary)}/predict/test",
        "quarantine": "results/remap/quarantine.csv",
        "classes": split_manifest(run, "classes"),
        "fold_classes": fold_classes(run),
        **crossval_outputs(run),
        **no_tta_inputs(run),
        **({"infer": infer_dir()} if INFER_IMAGES and not COMPARE else {}),
    }


def no_tta_inputs(run):
    """For a run with predict.tta, what its report sets beside the scores with the flips: the
    test scores of the model that stands for it, and each trained model's val scores, with and
    without the flips (evaluate_no_tta); none without."""
    if not RUNS[run].config["predict"]["tta"]:
        return {}
    primary = run_dir(RUNS[run].primary.name)
    trained = [run_dir(m.name) for m in RUNS[run].models if m.trained]
    return {
        "no_tta_metrics": f"{primary}/evaluate_no_tta/test/metrics.json",
        "no_tta_per_class": f"{primary}/evaluate_no_tta/test/per_class.csv",
        "tta_val_metrics": [f"{m}/evaluate/val/metrics.json" for m in trained],
        "no_tta_val_metrics": [
            f"{m}/evaluate_no_tta/val/metrics.json" for m in trained
        ],
    }


def compare_run(run):
    """What rule compare reads of a run (see segpipe.reporting.comparison.RunResult), paths relative to the
    workflow; ``report_html`` relative to the comparison report. With folds: the test outputs
    of the fold ensemble (else fold 0), fold 0's training, the cross-validation summary.
    """
    primary, first = run_dir(RUNS[run].primary.name), run_dir(RUNS[run].models[0].name)
    return {
        "name": run,
        "overrides": RUNS[run].overrides,
        "report_html": f"../runs/{run}/report/report.html",
        "val_metrics": f"{first}/evaluate/val/metrics.json",
        "test_metrics": f"{primary}/evaluate/test/metrics.json",
        "test_per_class": f"{primary}/evaluate/test/per_class.csv",
        "test_per_image": f"{primary}/evaluate/test/per_image.csv",
        "history": f"{first}/train/history.csv",
        "model_json": f"{first}/train/model.json",
        "test_manifest": split_manifest(run, "test"),
        "test_predictions": f"{primary}/predict/test",
        **crossval_outputs(run),
    }


def compare_inputs():
    """Every file rule compare reads, and each run's report (linked from the comparison)."""
    files = []
    for run in RUNS:
        entry = compare_run(run)
        files += [
            v for k, v in entry.items() if k not in ("name", "overrides", "report_html")
        ]
        files.append(f"{run_dir(run)}/report/report.html")
    return sorted(set(files)) + ([infer_dir()] if INFER_IMAGES else [])


def infer_dir():
    """Where the images of infer.images are predicted: in the run's folder, or with experiments
    by the run the comparison selects, in results/compare/infer."""
    if COMPARE:
        return "results/compare/infer"
    return f"{run_dir(next(iter(RUNS)))}/infer"


def infer_targets():
    """The predictions of infer.images that rule all asks for; none when it is null."""
    return [infer_dir()] if INFER_IMAGES else []


def infer_inputs():
    """The files of infer.images that can be inputs (see dataset_input)."""
    return [path for path in INFER_IMAGES if not contains_wildcard(path)]


def infer_fingerprint():
    """Size and modification time of each file of infer.images that cannot be an input, a param:
    its change, addition or removal reruns the prediction too."""
    return [
        f"{path}: {os.stat(path).st_size} bytes, modified at {os.stat(path).st_mtime_ns} ns"
        for path in INFER_IMAGES
        if contains_wildcard(path)
    ]


def infer_options(run):
    """How a run predicts new images: its predict options, device and amp."""
    cfg = RUNS[run].config
    return {
        "batch_size": cfg["predict"]["batch_size"],
        "overlay_alpha": cfg["predict"]["overlay_alpha"],
        "tta": cfg["predict"]["tta"],
        "device": cfg["train"]["device"],
        "amp": cfg["train"]["amp"],
    }


def infer_models():
    """Per run, the checkpoints of the model that stands for it (Run.primary) and its
    infer_options: what predicting infer.images takes once the comparison selects it; the
    untracked ones (predict.batch_size) in infer_runtime."""
    return {
        run: {
            "checkpoints": checkpoints(RUNS[run].primary.name),
            **tracked("predict", infer_options(run)),
        }
        for run in RUNS
    }


def infer_runtime():
    """Per run, the infer_options that reach infer_selected untracked (segpipe.params)."""
    return Untracked(
        {run: dict(untracked("predict", infer_options(run))) for run in RUNS}
    )


def selection_runs():
    """Per run, in declared order, the validation scores the comparison selects a run by
    (segpipe.evaluation.selection.validation_score): its val metrics, a cross-validated run's summary.
    """
    return {
        run: {
            "val_metrics": compare_run(run)["val_metrics"],
            "crossval_metrics": compare_run(run).get("crossval_metrics"),
        }
        for run in RUNS
    }


def selection_inputs():
    """The files of selection_runs."""
    files = [path for entry in selection_runs().values() for path in entry.values()]
    return sorted({path for path in files if path})
