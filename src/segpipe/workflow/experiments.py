"""Runs side by side: named experiments and grids over options, on top of one base config.

A config declares its runs in two optional sections (config/schema.yaml):

- ``experiments``: named runs, each a partial override of the base config
  (``{mobilenet: {train: {encoder: mobilenet_v2}}}``);
- ``grid``: dotted options and their values; every combination is a run, named from its values
  (``train.encoder: [resnet18, mobilenet_v2]`` x ``train.loss: [ce, ce+dice]`` gives
  ``encoder-resnet18_loss-ce`` ... ``encoder-mobilenet_v2_loss-ce+dice``).

Both may be given: the runs are the named ones followed by the grid's. A config with neither is
one run, named by ``run_name``. Every run's merged config is validated like a single config.
Runs share the data (download, remap): an override of ``dataset``, ``classes``, ``remap`` or
``ignore_index`` is an error. They share a split when their ``split`` sections are equal but for
``split.folds``, and the preprocessed arrays when their split and ``train.image_size`` are.

A run trains one model (``results/runs/<run>/``) or, with ``split.folds: k``, one per fold
(``<run>/fold0`` ... ``<run>/fold<k-1>``), plus with ``predict.ensemble: folds`` the fold
ensemble ``<run>/ensemble`` that averages them. These are the run's models (:class:`Model`).

A model's identity is the options that train it (:func:`model_identity`: those of class
``model`` in segpipe.params.OPTION_CLASSES). A run whose identity equals an earlier run's
shares that run's trainings (:attr:`Run.shares`): it is predicted, scored and reported on its
own, from the checkpoints in ``results/runs/<earlier run>/train/``, and trains nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segpipe.params import DATA_OPTIONS, MODEL, option_class, set_dotted
from segpipe.workflow import paths
from segpipe.workflow.config import ConfigError, load_config_file

# Sections that declare runs, the name of the single run and the search over runs
# (segpipe.workflow.search): not options of a run.
RUN_SECTIONS = ("experiments", "grid", "run_name", "search")
# Options of the whole workflow that every run shares: not options of a run either.
SHARED_SECTIONS = ("pretrained",)
# Dict options that an override replaces whole, as on the command line
# (segpipe.workflow.config.replace_whole_options).
REPLACED_WHOLE = (("train", "augment"),)
NAME_MAX = 100
BASE_SPLIT = "base"


# Cuts the train+val pool of a split into folds (results/folds/): not part of the split setting.
FOLDS = "folds"


@dataclass(frozen=True)
class Model:
    """A model of a run, named by its folder ``results/runs/<name>/``: the run's only model
    (``<run>``), one fold's (``<run>/fold<i>``), or the fold ensemble (``<run>/ensemble``,
    predicted and evaluated, never trained: ``members`` are the fold models it averages)."""

    name: str
    run: str
    fold: int | None = None
    members: tuple[str, ...] = ()
    # The model whose training this one is (Run.shares): its checkpoints, history and train
    # job are that model's; None: trained as itself.
    trained_as: str | None = None

    @property
    def trained(self) -> bool:
        """A single trained model (its own training or a shared one), not an ensemble."""
        return not self.members

    @property
    def training(self) -> str:
        """The model whose train job trains it (results/runs/<training>/train/)."""
        return self.trained_as or self.name

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits it predicts and evaluates: an ensemble has no validation split (each
        image of the pool trained all but one of its members)."""
        return ("test",) if self.members else ("val", "test")


@dataclass(frozen=True)
class Run:
    """One training run: its name, validated config, what it changes and the split it uses."""

    name: str
    config: dict[str, Any]
    overrides: dict[str, Any]  # dotted option -> value, as declared
    splitting: str  # results/split/<splitting>/: "base", or named by the split options changed
    split: dict[str, Any]  # the options of rule split (run_split_settings)
    # The earlier run whose trainings this run's models share (equal model_identity); None:
    # it trains its own.
    shares: str | None = None

    @property
    def folds(self) -> int | None:
        """k of k-fold cross-validation (split.folds), None for one model."""
        return self.config["split"][FOLDS]

    @property
    def models(self) -> list[Model]:
        """The run's models: itself, or its folds and (predict.ensemble: folds) their ensemble."""
        if self.folds is None:
            return [Model(self.name, self.name, trained_as=self.shares)]
        folds = [
            Model(
                f"{self.name}/fold{i}",
                self.name,
                i,
                trained_as=self.shares and f"{self.shares}/fold{i}",
            )
            for i in range(self.folds)
        ]
        if self.config["predict"]["ensemble"] != "folds":
            return folds
        return [
            *folds,
            Model(f"{self.name}/ensemble", self.name, None, tuple(m.name for m in folds)),
        ]

    @property
    def primary(self) -> Model:
        """The model that stands for the run on the test split (report gallery, confusion,
        comparison): the ensemble when there is one, else fold 0, else the run's only model."""
        models = self.models
        return models[-1] if models[-1].members else models[0]


# With split.folds, every model trains and validates on the folds of the whole train+val pool,
# and split.val_fraction is unused; where no run without folds shares the split, it is cut at
# this fraction (the schema's default) whatever it says, so that changing it retrains nothing.
FOLDS_VAL_FRACTION = 0.15
VAL_FRACTION = "val_fraction"


def split_setting(split: Mapping[str, Any]) -> dict[str, Any]:
    """The options of rule split: the split section without ``folds`` (a change of the folds
    cuts the pool anew, but leaves the split, its test images and their arrays as they are)."""
    return {k: v for k, v in split.items() if k != FOLDS}


def run_split_settings(configs: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The split setting of each run's config (:func:`split_setting`). A run with folds does
    not use val_fraction: it shares the split of the first run without folds whose other split
    options are the same, else its split is cut at FOLDS_VAL_FRACTION."""
    unfolded = [split_setting(c["split"]) for c in configs if c["split"].get(FOLDS) is None]
    return [_fold_split(c["split"], unfolded) for c in configs]


def _fold_split(split: Mapping[str, Any], unfolded: list[dict[str, Any]]) -> dict[str, Any]:
    setting = split_setting(split)
    if split.get(FOLDS) is None:
        return setting
    rest = {k: v for k, v in setting.items() if k != VAL_FRACTION}
    shared = (
        p[VAL_FRACTION]
        for p in unfolded
        if {**p, VAL_FRACTION: None} == {**rest, VAL_FRACTION: None}
    )
    return {**setting, VAL_FRACTION: next(shared, FOLDS_VAL_FRACTION)}


def expand_runs(
    raw: Mapping[str, Any], validated: Mapping[str, Any], validate: Callable[[dict], dict]
) -> list[Run]:
    """The runs a config declares, each validated by ``validate`` (segpipe.workflow.config.validate_config).

    ``raw`` is the config as given (before defaults), ``validated`` the base config validated.
    Raises ConfigError naming the run and the option.
    """
    # The runs in the order the config declares them (the validated config's keys are sorted).
    declared = declared_overrides({k: raw.get(k) for k in ("experiments", "grid")})
    if declared is None:
        cfg = _single(validated)
        (split,) = run_split_settings([cfg])
        return [Run(validated["run_name"], cfg, {}, BASE_SPLIT, split)]
    base_raw = {k: copy.deepcopy(v) for k, v in raw.items() if k not in RUN_SECTIONS}
    configs = {
        name: _validated_run(name, _merge(base_raw, overrides), validate)
        for name, overrides in declared.items()
    }
    settings = run_split_settings(list(configs.values()))
    unfolded = [s for s, c in zip(settings, configs.values(), strict=True) if not c["split"][FOLDS]]
    base = _fold_split(validated["split"], unfolded)
    runs = [
        Run(name, cfg, flatten(declared[name]), _splitting(setting, base), setting)
        for (name, cfg), setting in zip(configs.items(), settings, strict=True)
    ]
    _check_split_names(runs)
    return share_trainings(runs)


def model_identity(run: Run) -> dict[str, Any]:
    """What a run's models are trained from: every option of its config of class ``model``
    (segpipe.params.OPTION_CLASSES), dotted, with the split section as the run's split job
    reads it (:attr:`Run.split`: a run with folds ignores split.val_fraction) and its folds.
    Two runs with one identity train identical models."""
    identity = {
        option: value
        for option, value in flatten(run.config).items()
        if option_class(option) == MODEL and not option.startswith("split.")
    }
    split = {**run.split, FOLDS: run.folds}
    return identity | {f"split.{key}": value for key, value in sorted(split.items())}


def share_trainings(runs: list[Run]) -> list[Run]:
    """The runs, each whose :func:`model_identity` equals an earlier run's sharing that run's
    trainings (:attr:`Run.shares`): one train job per distinct model."""
    first: dict[str, str] = {}
    shared = []
    for run in runs:
        key = json.dumps(model_identity(run), sort_keys=True, default=str)
        owner = first.setdefault(key, run.name)
        shared.append(dataclasses.replace(run, shares=None if owner == run.name else owner))
    return shared


def declared_overrides(cfg: Mapping[str, Any]) -> dict[str, dict] | None:
    """Run name -> nested override, named experiments first; None when the config declares none."""
    experiments, grid = cfg.get("experiments"), cfg.get("grid")
    if experiments is None and grid is None:
        return None
    runs: dict[str, dict] = {}
    for name, override in (experiments or {}).items():
        _add(runs, name, copy.deepcopy(override or {}), f"experiments.{name}")
    for name, override in grid_runs(grid) if grid else []:
        _add(runs, name, override, "grid")
    return runs


def _add(runs: dict, name: str, override: dict, where: str) -> None:
    if name in runs:
        raise ConfigError(
            f"invalid config:\n  config option '{where}': two runs are named '{name}'; "
            "rename one under experiments, or change the grid's values"
        )
    for option in flatten(override):
        section = option.split(".")[0]
        if section in DATA_OPTIONS or section in RUN_SECTIONS + SHARED_SECTIONS:
            why = (
                "changes what the data is; runs share dataset, classes, remap and ignore_index"
                if section in DATA_OPTIONS
                else "is not an option of a run"
            )
            raise ConfigError(f"invalid config:\n  run '{name}': option '{option}' {why}")
    runs[name] = override


def grid_runs(grid: Mapping[str, list]) -> list[tuple[str, dict]]:
    """(name, nested override) for every combination of the grid's values, in declared order."""
    options = list(grid)
    for option in options:
        if not grid[option]:
            raise ConfigError(f"invalid config:\n  config option 'grid.{option}': no values")
    labels = _labels(options)
    runs = []
    for values in itertools.product(*(grid[o] for o in options)):
        name = "_".join(f"{label}-{_slug(v)}" for label, v in zip(labels, values, strict=True))
        if len(name) > NAME_MAX:
            raise ConfigError(
                f"invalid config:\n  config option 'grid': run name '{name[:40]}...' is longer "
                f"than {NAME_MAX} characters; declare these runs under experiments with names"
            )
        override: dict = {}
        for option, value in zip(options, values, strict=True):
            set_dotted(override, option, copy.deepcopy(value))
        runs.append((name, override))
    return runs


def _labels(options: list[str]) -> list[str]:
    """The last part of each dotted option, or the whole option where the last parts repeat."""
    last = [o.rsplit(".", 1)[-1] for o in options]
    return [o if last.count(short) > 1 else short for o, short in zip(options, last, strict=True)]


def _slug(value: Any) -> str:
    """A value as a filesystem-safe part of a run name: ce+dice, 0.001, true, 1-2-1."""
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, list):
        text = ",".join(_slug(v) for v in value)
    elif isinstance(value, dict):
        text = ",".join(f"{k}-{_slug(v)}" for k, v in value.items())
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "empty"


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; options replaced whole stay one value."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        option = f"{prefix}{key}"
        whole = tuple(option.split(".")) in REPLACED_WHOLE
        if isinstance(value, Mapping) and value and not whole:
            flat.update(flatten(value, option + "."))
        else:
            flat[option] = value
    return flat


def _merge(base: Mapping[str, Any], override: Mapping[str, Any], path: tuple = ()) -> dict:
    """``base`` with ``override`` applied key by key; lists, scalars and REPLACED_WHOLE replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        here = (*path, key)
        nested = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        if nested and here not in REPLACED_WHOLE:
            merged[key] = _merge(merged[key], value, here)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validated_run(name: str, merged: dict, validate: Callable[[dict], dict]) -> dict:
    merged["run_name"] = name
    try:
        return _single(validate(merged))
    except ConfigError as exc:
        lines = str(exc).splitlines()[1:] or [str(exc)]
        raise ConfigError(
            "invalid config:\n  " + "\n  ".join(f"run '{name}': {line.strip()}" for line in lines)
        ) from None


def _single(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config: without the sections that declare runs or search over them."""
    return {k: v for k, v in cfg.items() if k not in ("experiments", "grid", "search")}


def _splitting(split: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """The base config's split is "base"; another is named by the options that differ: seed-7."""
    changed = {k: v for k, v in sorted(split.items()) if base.get(k) != v}
    if not changed:
        return BASE_SPLIT
    return "_".join(f"{k}-{_slug(v)}" for k, v in changed.items())


def _check_split_names(runs: list[Run]) -> None:
    """Two different split settings never share a folder (a value's slug can repeat)."""
    settings: dict[str, str] = {}
    for run in runs:
        text = json.dumps(run.split, sort_keys=True)
        if settings.setdefault(run.splitting, text) != text:
            digest = hashlib.sha256(text.encode()).hexdigest()[:8]
            raise ConfigError(
                f"invalid config:\n  run '{run.name}': its split options give the folder name "
                f"'{run.splitting}' of another split setting (setting {digest}); change a value"
            )


def run_names(cfg: Mapping[str, Any]) -> list[str]:
    """The names of the runs a (merged) config declares, in order."""
    declared = declared_overrides({k: cfg.get(k) for k in ("experiments", "grid")})
    return [cfg.get("run_name", "segpipe")] if declared is None else list(declared)


def main(argv: list[str] | None = None) -> int:
    """``python -m segpipe.workflow.experiments --reports CONFIG...``: the reports a run of the configs
    (merged as Snakemake merges --configfile files) writes, one path per line."""
    import argparse

    parser = argparse.ArgumentParser(description=(main.__doc__ or "").partition("\n")[0])
    parser.add_argument("--reports", nargs="+", type=Path, required=True, metavar="CONFIG")
    args = parser.parse_args(argv)
    merged: dict[str, Any] = {}
    try:
        for path in args.reports:
            merged = _merge(merged, load_config_file(path))
    except ConfigError as exc:
        print(f"segpipe: {exc}", file=sys.stderr)
        return 2
    names = run_names(merged)
    for name in names:
        print(f"Run report ({name}): {paths.report_file('report.html', name)}")
    if merged.get("experiments") is not None or merged.get("grid") is not None:
        print(f"Comparison: {paths.compare_file('report.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
