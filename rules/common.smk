"""Config validation and helpers shared by the rule files."""

import functools
import os
import re
from pathlib import Path

from snakemake.io import contains_wildcard

from segpipe.config import ConfigError, load_schema, validate_config
from segpipe.datasets import dataset_files
from segpipe.download import OXFORD_PETS_RESOURCES
from segpipe.experiments import expand_runs


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
SPLITTINGS = {run.splitting: run.config["split"] for run in RUNS.values()}
# Experiments and grids compare their runs in results/compare/.
COMPARE = config["experiments"] is not None or config["grid"] is not None

EVAL_SPLITS = ["val", "test"]
SOURCE = config["dataset"]["source"]


wildcard_constraints:
    split="train|val|test",
    run="|".join(re.escape(name) for name in RUNS),
    splitting="|".join(re.escape(name) for name in SPLITTINGS),
    size="[0-9]+",


def res(rule_name, key):
    """Threads / mem_mb / runtime of a rule, from config['resources']."""
    return config["resources"][rule_name][key]


def run_res(rule_name, key):
    """Threads / mem_mb / runtime / gpu_model of a per-run rule, from the run's resources."""
    return lambda wildcards: RUNS[wildcards.run].config["resources"][rule_name][key]


def run_option(*keys):
    """A param of a per-run rule: the run's config at ``keys`` (a section, or an option)."""

    def get(wildcards):
        value = RUNS[wildcards.run].config
        for key in keys:
            value = value[key]
        return value

    return get


def run_dir(run):
    """Where a run's train, predict, evaluate and report outputs go."""
    return f"results/runs/{run}"


def split_manifest(run, split):
    """The manifest of ``split`` in the split setting the run uses (rule split)."""
    return f"results/split/{RUNS[run].splitting}/{split}.csv"


def preprocessed(run, split):
    """The array of ``split`` at the run's image size (rule preprocess)."""
    size = RUNS[run].config["train"]["image_size"]
    return f"results/preprocess/{RUNS[run].splitting}/{size}/{split}.npy"


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
    """The files of a user's folder that remap reads (see segpipe.datasets.DatasetFiles)."""
    dataset = config["dataset"]
    return dataset_files(
        dataset_layout(),
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


def dataset_layout():
    """folder, voc or oxford for a user's folder (dataset.layout); oxford for the downloads."""
    return config["dataset"]["layout"] if SOURCE == "folder" else "oxford"


def remap_params():
    """Dataset layout and mask remapping options of rule remap (see segpipe.remap)."""
    dataset, remap = config["dataset"], config["remap"]
    return {
        "layout": dataset_layout(),
        "images_dir": dataset["images_dir"],
        "masks_dir": dataset["masks_dir"],
        "mask_suffix": dataset["mask_suffix"],
        "split_lists": dataset["split_lists"],
        "table": remap["table"],
        "colors": remap["colors"],
        "ignore_value": remap["ignore_value"],
        "unmapped": remap["unmapped"],
        "max_quarantine_fraction": remap["max_quarantine_fraction"],
        "ignore_index": config["ignore_index"],
        "class_names": config["classes"],
    }


def download_resources():
    """Archives to fetch for oxford_pets (config urls, else the official ones); synthetic reads
    its resources.json, written by rule synthesize."""
    if SOURCE == "oxford_pets":
        return config["dataset"].get("urls") or OXFORD_PETS_RESOURCES
    return []


def run_benchmarks(run):
    """Job name -> Snakemake benchmark file of every job a run's report depends on."""
    size = RUNS[run].config["train"]["image_size"]
    splitting = RUNS[run].splitting
    jobs = {
        "download": "benchmarks/download/download.tsv",
        "remap": "benchmarks/remap/remap.tsv",
    }
    jobs["split"] = f"benchmarks/split/{splitting}.tsv"
    for split in ("train", "val", "test"):
        jobs[f"preprocess ({split})"] = (
            f"benchmarks/preprocess/{splitting}/{size}/{split}.tsv"
        )
    jobs["train"] = f"benchmarks/train/{run}.tsv"
    for rule_name in ("predict", "evaluate"):
        for split in EVAL_SPLITS:
            jobs[f"{rule_name} ({split})"] = f"benchmarks/{rule_name}/{run}/{split}.tsv"
    return jobs


def compare_run(run):
    """What rule compare reads of a run (see segpipe.compare.RunResult), paths relative to the
    workflow; ``report_html`` relative to the comparison report."""
    out = run_dir(run)
    return {
        "name": run,
        "overrides": RUNS[run].overrides,
        "report_html": f"../runs/{run}/report/report.html",
        "val_metrics": f"{out}/evaluate/val/metrics.json",
        "test_metrics": f"{out}/evaluate/test/metrics.json",
        "test_per_class": f"{out}/evaluate/test/per_class.csv",
        "test_per_image": f"{out}/evaluate/test/per_image.csv",
        "history": f"{out}/train/history.csv",
        "model_json": f"{out}/train/model.json",
        "test_manifest": split_manifest(run, "test"),
        "test_predictions": f"{out}/predict/test",
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
    return sorted(set(files))
