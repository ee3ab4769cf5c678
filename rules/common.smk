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
from segpipe.evaluation.rungs import read_promoted
from segpipe.models.pretrained import record_path
from segpipe.workflow.experiments import expand_runs
from segpipe.workflow.layout import Layout, run_dir
from segpipe.workflow.search import (
    candidate_problems,
    parse_search,
    rung_budgets,
    sampled_experiments,
    schedule_epochs,
    search_candidates,
    search_problems,
)
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
# A search's budget, ranges and candidates (segpipe.workflow.search).
_problems = search_problems(config, search_candidates(config, list(RUNS)))
if _problems := _problems or candidate_problems(
    parse_search(config["search"]), {n: r.config for n, r in RUNS.items()}
):
    raise _config_error(_problems)
# A successive-halving search over the runs (rules/search.smk), or None; the cumulative epoch
# budget of each of its rungs.
SEARCH = parse_search(config["search"])
SEARCH_BUDGETS = (
    rung_budgets(SEARCH.min_epochs, SEARCH.max_epochs, SEARCH.eta) if SEARCH else []
)
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
)


wildcard_constraints:
    split="train|val|test",
    run="|".join(re.escape(name) for name in RUNS),
    model="|".join(re.escape(name) for name in MODELS),
    splitting="|".join(re.escape(name) for name in SPLITTINGS),
    size="[0-9]+|x[0-9.e+-]+",
    k="[0-9]+",
    fold="[0-9]+",
    rung="|".join(str(rung) for rung in range(len(SEARCH_BUDGETS))) or "(?!)",


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


# --- a successive-halving search (rules/search.smk) -------------------------------------------


def rung_candidates(rung):
    """The candidates rung ``rung`` trains: every run in rung 0, then those the previous
    rung's file promotes (known once that rung is decided: a Snakemake checkpoint)."""
    if rung == 0:
        return list(RUNS)
    return read_promoted(checkpoints.search_rung.get(rung=str(rung - 1)).output.rung)


def search_winner():
    """The run the last rung promotes."""
    last = checkpoints.search_rung.get(rung=str(len(SEARCH_BUDGETS) - 1)).output.rung
    (winner,) = read_promoted(last)
    return winner


def search_targets(wildcards):
    """What a search makes: every rung's file, the search report and, for the winner only,
    everything a run gets (predictions, scores with and without flips, its report)."""
    if SEARCH is None:
        return []
    winner = search_winner()
    return [
        "results/search/report.html",
        f"{run_dir(winner)}/report/report.html",
        *[f for f in LAYOUT.evaluations() if f.startswith(f"{run_dir(winner)}/")],
    ]


# The runs whose train outputs search_winner writes, the winner's; none without a search.
SEARCH_RUNS = "|".join(re.escape(name) for name in RUNS) if SEARCH else "(?!)"


def rung_dir(run, rung):
    """Where rule search_train puts a candidate's rung."""
    return f"results/search/{run}/rung{rung}"


def previous_rung(wildcards):
    """The checkpoints a candidate's rung starts from: its previous rung's; none in rung 0."""
    rung = int(wildcards.rung)
    if rung == 0:
        return []
    return [
        f"{rung_dir(wildcards.run, rung - 1)}/{name}" for name in ("last.pt", "best.pt")
    ]


def rung_train_options(wildcards):
    """A candidate's train options in a rung: its run's, trained to the rung's budget on the
    schedule of the whole search (segpipe.workflow.search.schedule_epochs)."""
    train = RUNS[wildcards.run].config["train"]
    return {
        **train,
        "epochs": SEARCH_BUDGETS[int(wildcards.rung)],
        "schedule_epochs": schedule_epochs(SEARCH, train["scheduler"]),
    }


def winner_files(wildcards):
    """The winner's last rung: its checkpoints, history and model card."""
    winner = search_winner()
    if wildcards.model != winner:
        raise ValueError(
            f"run '{wildcards.model}' was stopped by the search (see results/search/); "
            f"only the winner, '{winner}', is trained in full"
        )
    folder = rung_dir(winner, len(SEARCH_BUDGETS) - 1)
    names = {
        "best": "best.pt",
        "last": "last.pt",
        "history": "history.csv",
        "model": "model.json",
    }
    return {key: f"{folder}/{name}" for key, name in names.items()}


def search_report_inputs(wildcards):
    """Every rung's file (in order) and each candidate's history of the last rung it trained."""
    rungs = [f"results/search/rung{rung}.csv" for rung in range(len(SEARCH_BUDGETS))]
    last = {}
    for rung in range(len(SEARCH_BUDGETS)):
        for run in rung_candidates(rung):
            last[run] = f"{rung_dir(run, rung)}/history.csv"
    return {"rungs": rungs, "histories": [last[run] for run in RUNS]}
