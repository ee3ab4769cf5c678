"""The pipeline of the config (segpipe.workflow.loader), and the getters the rules share."""

import os
from pathlib import Path

from snakemake.io import contains_wildcard

from segpipe.workflow import paths
from segpipe.workflow import jobs
from segpipe.workflow.config import (
    ConfigError,
    dataset_options,
    download_resources,
    load_schema,
)
from segpipe.models.pretrained import record_path
from segpipe.workflow.loader import load_pipeline, one_of
from segpipe.params import Untracked, run_summary

try:
    PIPELINE = load_pipeline(
        config,
        workflow.config_settings.overwrite_config,
        load_schema(Path(workflow.basedir) / "config/schema.yaml"),
        # Jobs on a cluster node: the submitting process checked the model names already.
        check_models=not workflow.remote_exec,
    )
except ConfigError as exc:
    raise ValueError(str(exc)) from None
config.clear()
config.update(PIPELINE.config)
# The runs (results/runs/<run>/), their models (a run, its folds <run>/fold<i>, its
# <run>/ensemble) and split settings (results/split/<splitting>/).
RUNS, MODELS, SPLITTINGS = PIPELINE.runs, PIPELINE.models, PIPELINE.splittings
# A successive-halving search over the runs (rules/search.smk) or None, the cumulative epochs of
# its rungs, each bracket's rungs (indices into SEARCH_BUDGETS).
SEARCH, SEARCH_BUDGETS, BRACKETS = PIPELINE.search, PIPELINE.budgets, PIPELINE.brackets
# Experiments and grids compare their runs in results/compare/.
COMPARE = PIPELINE.compare
SOURCE = config["dataset"]["source"]
# The images of infer.images, predicted with the trained model (rules/infer.smk); none when null.
INFER_IMAGES = PIPELINE.infer_images
# Pretrained encoder weights (rules/pretrained.smk): the cache folder, pretrained.cache.
PRETRAINED_CACHE = config["pretrained"]["cache"]
# Which files a run or a model reads (segpipe.workflow.layout).
LAYOUT = PIPELINE.layout
# The models that train as themselves (a model sharing another's training has no train job).
TRAINED_MODELS = one_of(LAYOUT.trained_models())


wildcard_constraints:
    **PIPELINE.wildcard_constraints(),


def res(rule_name, key, of_run=False):
    """Threads / mem_mb / runtime / gpu_model from config['resources'][rule_name], or with
    ``of_run`` from the job's run's resources (per-run and per-model jobs)."""
    if not of_run:
        return config["resources"][rule_name][key]
    return lambda wildcards: _job_run(wildcards).config["resources"][rule_name][key]


def _job_run(wildcards):
    """The run of a per-run ({run}) or per-model ({model}) job."""
    return RUNS[wildcards.get("run") or MODELS[wildcards.model].run]


def run_option(*keys):
    """A param of a per-run or per-model rule: the run's config at ``keys`` (a section, or an
    option)."""

    def get(wildcards):
        value = _job_run(wildcards).config
        for key in keys:
            value = value[key]
        return value

    return get


def tracked_of(build, **options):
    """A per-run or per-model job's tracked options of a config section (segpipe.workflow.jobs:
    ``build``), a param: a change reruns the job."""
    return lambda wildcards: build(_job_run(wildcards).config, **options).tracked


def untracked_of(build, **options):
    """The untracked options of the same (segpipe.params.Untracked): a change reruns nothing."""
    return lambda wildcards: build(_job_run(wildcards).config, **options).untracked


def verbatim(value):
    """A param that Snakemake passes as it is: a plain string (or list of strings) param is
    formatted with the job's wildcards, so the braces of a dataset root or a class name such as
    `data {v1}` would fail the DAG with a WildcardError."""
    return lambda wildcards: value


def as_inputs(paths):
    """The paths that can be inputs: a path with a `{name}` in it (a file `{x}.png`, a root
    `data {v1}`) cannot, Snakemake takes it for a wildcard, escaped as `{{x}}` or not.
    """
    return [path for path in paths if not contains_wildcard(path)]


def dataset_dir():
    """Where the dataset lives: the download output, or the user's own folder."""
    if SOURCE == "folder":
        return config["dataset"]["root"]
    return str(rules.download.output.dataset)


def dataset_input():
    """Remap's input: the download rule's directory, or the newest file of a user's folder (any
    edit or addition below the root makes it newer than remap's outputs); a newest file whose
    name cannot be an input (see as_inputs) goes into dataset_fingerprint instead."""
    if SOURCE != "folder":
        return dataset_dir()
    return as_inputs(PIPELINE.dataset_files.newest())


def dataset_fingerprint():
    """Names and sizes of a user's folder's files, a param of remap: a removal or a rename
    reruns it too; and the modification time of a newest file that cannot be remap's input
    (see dataset_input). Downloads: their archives' checksums, in the download rule's params.
    """
    if SOURCE != "folder":
        return None
    unnamed = [p for p in PIPELINE.dataset_files.newest() if contains_wildcard(p)]
    stamps = "".join(
        f", newest file modified at {os.stat(p).st_mtime_ns} ns" for p in unnamed
    )
    return PIPELINE.dataset_files.fingerprint() + stamps


def infer_fingerprint():
    """Size and modification time of each file of infer.images that cannot be an input (see
    as_inputs), a param: its change, addition or removal reruns the prediction too."""
    return [
        f"{path}: {os.stat(path).st_size} bytes, modified at {os.stat(path).st_mtime_ns} ns"
        for path in INFER_IMAGES
        if contains_wildcard(path)
    ]
