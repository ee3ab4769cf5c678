"""Config loading and validation, the RUNS and MODELS tables, and small getters for the rules."""

import os
import re
from pathlib import Path

from snakemake.io import contains_wildcard

from segpipe.data.layouts import dataset_files
from segpipe.workflow.config import (
    ConfigError,
    base_config,
    borrowed_options,
    dataset_layout,
    dataset_options,
    download_resources,
    infer_images_problems,
    infer_options,
    load_schema,
    predict_options,
    replace_whole_options,
    validate_config,
)
from segpipe.models.pretrained import record_path
from segpipe.workflow.experiments import expand_runs
from segpipe.workflow import paths
from segpipe.workflow.layout import Layout
from segpipe.workflow.brackets import ladder
from segpipe.workflow.search import (
    candidate_problems,
    parse_search,
    sampled_experiments,
    search_candidates,
    search_problems,
)
from segpipe.outputs import path_option_problems
from segpipe.params import Untracked, run_summary, tracked, untracked

replace_whole_options(config, workflow.config_settings.overwrite_config)
# A config that reads another dataset gives the options that describe one (classes, names,
# sizes...), or it would run with config.yaml's, chosen for Oxford-IIIT Pet.
if _borrowed := borrowed_options(
    base_config(), workflow.config_settings.overwrite_config
):
    raise ValueError(_borrowed)
_schema = load_schema(Path(workflow.basedir) / "config/schema.yaml")


def _validate(cfg):
    # Jobs on a cluster node: the submitting process checked the model names already.
    return validate_config(cfg, _schema, check_models=not workflow.remote_exec)


def _config_error(problems):
    return ValueError("invalid config:\n  " + "\n  ".join(problems))


try:
    _validated = _validate(config)
    # The runs the config declares (experiments, grid), or the one run named by run_name; with
    # search.sample, the search's seeded draws as named runs.
    _sampled = sampled_experiments(_validated)
    _declared = {**config, "experiments": _sampled} if _sampled else config
    RUNS = {run.name: run for run in expand_runs(_declared, _validated, _validate)}
except ConfigError as exc:
    raise ValueError(str(exc)) from None
config.clear()
config.update(_validated)
if _problems := infer_images_problems(config, {n: r.config for n, r in RUNS.items()}):
    raise _config_error(_problems)
# What the pipeline writes (Snakemake's outputs, the weights cache) is kept apart from what it
# only reads (segpipe.outputs).
if _problems := path_option_problems(
    {
        **{f"{folder}/": folder for folder in (*paths.WRITTEN, ".snakemake")},
        "config option 'pretrained.cache'": config["pretrained"]["cache"],
    },
    {
        "config option 'dataset.root'": (
            config["dataset"].get("root")
            if config["dataset"]["source"] == "folder"
            else None
        ),
        "config option 'infer.images'": config["infer"]["images"],
    },
):
    raise _config_error(_problems)
# A search's budget, ranges and candidates (segpipe.workflow.search).
_problems = search_problems(config, search_candidates(config, list(RUNS)))
if _problems := _problems or candidate_problems(
    parse_search(config["search"]), list(RUNS.values())
):
    raise _config_error(_problems)
# A successive-halving search over the runs (rules/search.smk), or None.
SEARCH = parse_search(config["search"])
# The cumulative epoch budget of each rung, shared by the search's brackets.
SEARCH_BUDGETS = ladder(SEARCH) if SEARCH else []
# Split settings of the runs: results/split/<splitting>/, computed once each.
SPLITTINGS = {run.splitting: run.split for run in RUNS.values()}
# The runs' models (results/runs/<model>/): a run, its folds <run>/fold<i>, its <run>/ensemble.
MODELS = {model.name: model for run in RUNS.values() for model in run.models}
# Experiments and grids compare their runs in results/compare/.
COMPARE = SEARCH is None and (
    config["experiments"] is not None or config["grid"] is not None
)
SOURCE = config["dataset"]["source"]


def _infer_files(folder):
    """The files of infer.images as segpipe predict finds them (recursively, hidden files left
    out), checked before any job runs; none when it is null."""
    if folder is None:
        return []
    from segpipe.inference.folder import InferError, OutputClashError, find_images

    try:
        return [str(path) for path in find_images([folder])]
    except OutputClashError as exc:
        problem = str(exc)
    except InferError:
        problem = f"folder '{folder}' holds no files"
    raise _config_error([f"config option 'infer.images': {problem}"])


# The images of infer.images, predicted with the trained model (rules/infer.smk); none when null.
INFER_IMAGES = _infer_files(config["infer"]["images"])
# Which files a run or a model reads (segpipe.workflow.layout).
# Pretrained encoder weights (rules/pretrained.smk): the cache folder, pretrained.cache.
PRETRAINED_CACHE = config["pretrained"]["cache"]
LAYOUT = Layout(
    RUNS,
    SOURCE,
    infer=bool(INFER_IMAGES),
    compare=COMPARE,
    pretrained_cache=PRETRAINED_CACHE,
    search_rungs=len(SEARCH_BUDGETS),
)
# The models that train as themselves (a model sharing another's training has no train job).
TRAINED_MODELS = "|".join(re.escape(name) for name in LAYOUT.trained_models()) or "(?!)"


wildcard_constraints:
    split="train|val|test",
    run="|".join(re.escape(name) for name in RUNS),
    model="|".join(re.escape(name) for name in MODELS),
    splitting="|".join(re.escape(name) for name in SPLITTINGS),
    size=paths.SIZE_PATTERN,
    k="[0-9]+",
    fold="[0-9]+",


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


# The files of a user's folder that remap reads (see segpipe.data.layouts.DatasetFiles).
_DATASET_FILES = (
    dataset_files(
        dataset_layout(config["dataset"]),
        config["dataset"]["root"],
        images_dir=config["dataset"]["images_dir"],
        masks_dir=config["dataset"]["masks_dir"],
        split_lists=config["dataset"]["split_lists"],
    )
    if SOURCE == "folder"
    else None
)


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
    return as_inputs(_DATASET_FILES.newest())


def dataset_fingerprint():
    """Names and sizes of a user's folder's files, a param of remap: a removal or a rename
    reruns it too; and the modification time of a newest file that cannot be remap's input
    (see dataset_input). Downloads: their archives' checksums, in the download rule's params.
    """
    if SOURCE != "folder":
        return None
    unnamed = [p for p in _DATASET_FILES.newest() if contains_wildcard(p)]
    stamps = "".join(
        f", newest file modified at {os.stat(p).st_mtime_ns} ns" for p in unnamed
    )
    return _DATASET_FILES.fingerprint() + stamps


def infer_fingerprint():
    """Size and modification time of each file of infer.images that cannot be an input (see
    as_inputs), a param: its change, addition or removal reruns the prediction too."""
    return [
        f"{path}: {os.stat(path).st_size} bytes, modified at {os.stat(path).st_mtime_ns} ns"
        for path in INFER_IMAGES
        if contains_wildcard(path)
    ]


def infer_models():
    """Per run, the checkpoints of the model that stands for it (Run.primary) and its
    infer_options: what predicting infer.images takes once the comparison selects it; the
    untracked ones (predict.batch_size) in infer_runtime."""
    return {
        run: {
            "checkpoints": LAYOUT.checkpoints(RUNS[run].primary.name),
            **tracked("predict", infer_options(RUNS[run].config)),
        }
        for run in RUNS
    }


def infer_runtime():
    """Per run, the infer_options that reach infer_selected untracked (segpipe.params)."""
    return Untracked(
        {
            run: dict(untracked("predict", infer_options(RUNS[run].config)))
            for run in RUNS
        }
    )
