"""The pipeline a config describes, loaded once for the rules (rules/common.smk): the config
validated, its runs expanded, its search parsed, every check that must fail before any job runs,
and the files of the user's folders it reads.

:func:`load_pipeline` is pure of Snakemake: it takes the config Snakemake merged and the
options given on its command line, and raises :class:`ConfigError` with the one message to show.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.data.dataset_layouts import DatasetFiles, dataset_files
from segpipe.data.image_files import InferError, OutputClashError, find_images
from segpipe.outputs import path_option_problems
from segpipe.workflow import paths
from segpipe.workflow.brackets import bracket_problems, bracket_rungs, ladder
from segpipe.workflow.config import (
    BASE_CONFIG,
    ConfigError,
    base_config,
    borrowed_options,
    dataset_layout,
    infer_images_problems,
    replace_whole_options,
    validate_config,
)
from segpipe.workflow.experiments import Model, Run, expand_runs
from segpipe.workflow.layout import Layout
from segpipe.workflow.lr_peak import warmup_problems
from segpipe.workflow.search import (
    Search,
    candidate_problems,
    parse_search,
    sampled_experiments,
    search_candidates,
    search_problems,
)


@dataclass(frozen=True)
class Pipeline:
    """What the rules need of a config. ``config``: the validated config; ``runs``: its runs
    by name (experiments, grid, a search's draws, or the one run); ``search``: the
    successive-halving search or None, ``budgets`` the cumulative epochs of its rungs and
    ``brackets`` each bracket's rungs (indices into budgets); ``infer_images``: the files of
    infer.images (none when null); ``dataset_files``: what remap reads of a user's folder
    (None for a download)."""

    config: dict[str, Any]
    runs: dict[str, Run]
    search: Search | None
    budgets: list[int]
    brackets: list[list[int]]
    infer_images: list[str]
    dataset_files: DatasetFiles | None

    @property
    def source(self) -> str:
        return self.config["dataset"]["source"]

    @property
    def compare(self) -> bool:
        """Experiments and grids compare their runs (results/compare/); a search does not."""
        return self.search is None and (
            self.config["experiments"] is not None or self.config["grid"] is not None
        )

    @property
    def splittings(self) -> dict[str, dict[str, Any]]:
        """The split settings of the runs by name, each computed once."""
        return {run.splitting: run.split for run in self.runs.values()}

    @property
    def models(self) -> dict[str, Model]:
        return self.layout.models

    @functools.cached_property
    def layout(self) -> Layout:
        """Which files a run or a model reads (segpipe.workflow.layout)."""
        return Layout(
            self.runs,
            self.source,
            infer=bool(self.infer_images),
            compare=self.compare,
            pretrained_cache=self.config["pretrained"]["cache"],
            search_rungs=len(self.budgets),
        )

    def wildcard_constraints(self) -> dict[str, str]:
        """The regular expressions of the rules' wildcards: the names the config declares."""
        return {
            "split": "train|val|test",
            "run": one_of(self.runs),
            "model": one_of(self.models),
            "splitting": one_of(self.splittings),
            "size": paths.SIZE_PATTERN,
            "k": "[0-9]+",
            "fold": "[0-9]+",
            "rung": one_of(range(len(self.budgets))),
            "bracket": one_of(range(len(self.brackets))),
        }


def one_of(names: Iterable[object]) -> str:
    """A wildcard's regular expression matching exactly ``names`` (none: nothing)."""
    return "|".join(re.escape(str(name)) for name in names) or "(?!)"


def load_pipeline(
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    schema: Mapping[str, Any],
    *,
    check_models: bool = True,
    base: str | Path | None = BASE_CONFIG,
) -> Pipeline:
    """The pipeline of ``config`` (Snakemake's, the config files merged) with ``overrides``
    (its --config options); ``check_models``: whether model names are checked (the
    submitting process checks them, a cluster node's job need not). Raises ConfigError."""
    declared = replace_whole_options(copy.deepcopy(dict(config)), overrides)
    # A config that reads another dataset gives the options that describe one (classes, names,
    # sizes...), or it would run with config.yaml's, chosen for Oxford-IIIT Pet.
    if borrowed := borrowed_options(base_config(base), overrides):
        raise ConfigError(borrowed)

    def validate(cfg: Mapping[str, Any]) -> dict[str, Any]:
        return validate_config(cfg, schema, check_models=check_models)

    validated = validate(declared)
    # With search.sample, the search's seeded draws are the runs, as named experiments.
    if sampled := sampled_experiments(validated):
        declared = {**declared, "experiments": sampled}
    runs = {run.name: run for run in expand_runs(declared, validated, validate)}
    search = parse_search(validated["search"])
    _check(validated, runs, search)
    return Pipeline(
        config=validated,
        runs=runs,
        search=search,
        budgets=ladder(search) if search else [],
        brackets=bracket_rungs(search) if search else [],
        infer_images=_infer_files(validated["infer"]["images"]),
        dataset_files=_dataset_files(validated["dataset"]),
    )


def _check(cfg: Mapping[str, Any], runs: Mapping[str, Run], search: Search | None) -> None:
    """Raise ConfigError listing what no job could run with: infer.images differing between
    runs or holding results/, an output inside a folder the pipeline reads, a search's
    budget, ranges, candidates and brackets."""
    problems = infer_images_problems(cfg, {n: r.config for n, r in runs.items()})
    # What the pipeline writes (Snakemake's outputs, the weights cache) is kept apart from what
    # it only reads (segpipe.outputs).
    problems = problems or path_option_problems(
        {
            **{f"{folder}/": folder for folder in (*paths.WRITTEN, ".snakemake")},
            "config option 'pretrained.cache'": cfg["pretrained"]["cache"],
        },
        {
            "config option 'dataset.root'": (
                cfg["dataset"].get("root") if cfg["dataset"]["source"] == "folder" else None
            ),
            "config option 'infer.images'": cfg["infer"]["images"],
        },
    )
    problems = problems or search_problems(cfg, search_candidates(cfg, list(runs)))
    problems = problems or candidate_problems(search, list(runs.values()))
    if search and not problems:
        # Its brackets, and a first rung that ends before the learning rate peaks.
        configs = {name: run.config for name, run in runs.items()}
        problems = bracket_problems(search) + warmup_problems(
            search.min_epochs, search.max_epochs, configs
        )
    if problems:
        raise config_error(problems)


def config_error(problems: list[str]) -> ConfigError:
    """The one error of a list of problems with the config."""
    return ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _infer_files(folder: str | None) -> list[str]:
    """The files of infer.images as segpipe predict finds them (recursively, hidden files left
    out), checked before any job runs; none when it is null."""
    if folder is None:
        return []
    try:
        return [str(path) for path in find_images([folder])]
    except OutputClashError as exc:
        problem = str(exc)
    except InferError:
        problem = f"folder '{folder}' holds no files"
    raise config_error([f"config option 'infer.images': {problem}"])


def _dataset_files(dataset: Mapping[str, Any]) -> DatasetFiles | None:
    """The files of a user's folder that remap reads (segpipe.data.dataset_layouts.DatasetFiles)."""
    if dataset["source"] != "folder":
        return None
    return dataset_files(
        dataset_layout(dataset),
        dataset["root"],
        images_dir=dataset["images_dir"],
        masks_dir=dataset["masks_dir"],
        split_lists=dataset["split_lists"],
    )
