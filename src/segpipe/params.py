"""Which options reach a rule's job without rerunning it when they change.

Snakemake reruns a job when one of its ``params:`` changes (``--rerun-triggers params``, on by
default), and every job downstream of it after. Options that change how fast a job runs or how
it is watched, not what it writes, must not do that: a changed ``train.num_workers`` would train
every model again from scratch. Such options reach the job as an :class:`Untracked` param, which
Snakemake passes on but leaves out of the params it records and compares (it records only
params of Python's built-in types).

Which options those are follows from one table, :data:`OPTION_CLASSES`: every option of
config/schema.yaml is in one of four classes (docs/experiments.md, "A model's identity"):

- ``model``: it reaches the training and can change a trained weight (the data, the split,
  every ``train`` option that is computed with). These options are a model's identity
  (:func:`segpipe.workflow.experiments.model_identity`): runs that agree on them share one
  training;
- ``assessment``: it changes only how a trained model is predicted, scored or shown
  (``predict``, ``evaluate``, ``report``, ``compare``, ``infer``, ``dataset.name``);
- ``nothing``: it changes where and how fast jobs run or how training is watched, never what
  any job writes (``resources``, loader workers, loggers, prediction batches, download retries,
  the weights cache). Within ``dataset``, ``train`` and ``predict`` these reach their jobs
  untracked;
- ``runs``: it declares runs or a search over them (``run_name``, ``experiments``, ``grid``,
  ``search``); not an option of a run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

MODEL, ASSESSMENT, NOTHING, RUNS = "model", "assessment", "nothing", "runs"
OPTION_CLASS_NAMES = (MODEL, ASSESSMENT, NOTHING, RUNS)

# Every option of config/schema.yaml -> its class. A section named here whole (``report``) gives
# its class to every option in it, a new one too; the sections that mix classes (``dataset``,
# ``train``, ``predict``) name each option, so that a new option there has no class until it is
# given one (tests/test_params.py walks the schema and fails on any option without a class).
OPTION_CLASSES: dict[str, str] = {
    "run_name": RUNS,
    "experiments": RUNS,
    "grid": RUNS,
    "search": RUNS,
    # What the data is: the same for every run (segpipe.workflow.experiments.DATA_OPTIONS).
    "dataset.source": MODEL,
    "dataset.name": ASSESSMENT,
    "dataset.urls": MODEL,
    "dataset.retries": NOTHING,
    "dataset.timeout": NOTHING,
    "dataset.root": MODEL,
    "dataset.layout": MODEL,
    "dataset.images_dir": MODEL,
    "dataset.masks_dir": MODEL,
    "dataset.mask_suffix": MODEL,
    "dataset.split_lists": MODEL,
    "dataset.max_image_pixels": MODEL,
    "dataset.synthetic": MODEL,
    "classes": MODEL,
    "remap": MODEL,
    "ignore_index": MODEL,
    "split": MODEL,
    # Computed with: a change can change a weight (device, precision, memory layout and
    # compilation change the arithmetic; gpus the batches each step averages).
    "train.arch": MODEL,
    "train.encoder": MODEL,
    "train.encoder_weights": MODEL,
    "train.encoder_depth": MODEL,
    "train.decoder_channels": MODEL,
    "train.decoder_dropout": MODEL,
    "train.loss": MODEL,
    "train.class_weights": MODEL,
    "train.optimizer": MODEL,
    "train.lr": MODEL,
    "train.weight_decay": MODEL,
    "train.momentum": MODEL,
    "train.scheduler": MODEL,
    "train.warmup_epochs": MODEL,
    "train.epochs": MODEL,
    "train.schedule_epochs": MODEL,
    "train.batch_size": MODEL,
    "train.image_size": MODEL,
    "train.resize": MODEL,
    "train.image_scale": MODEL,
    "train.seed": MODEL,
    "train.device": MODEL,
    "train.gpus": MODEL,
    "train.amp": MODEL,
    "train.channels_last": MODEL,
    "train.compile": MODEL,
    "train.augment": MODEL,
    "train.num_workers": NOTHING,
    "train.log_to": NOTHING,
    "train.log_images_every": NOTHING,
    "pretrained": NOTHING,
    "predict.batch_size": NOTHING,
    "predict.mode": ASSESSMENT,
    "predict.overlap": ASSESSMENT,
    "predict.overlay_alpha": ASSESSMENT,
    "predict.overlays": ASSESSMENT,
    "predict.tta": ASSESSMENT,
    "predict.ensemble": ASSESSMENT,
    "infer": ASSESSMENT,
    "evaluate": ASSESSMENT,
    "report": ASSESSMENT,
    "compare": ASSESSMENT,
    "resources": NOTHING,
}


# What the data is: options of class "model" that every run of a config shares (runs read the
# same remapped masks); a run of experiments, a grid or a search cannot change them.
DATA_OPTIONS = ("dataset", "classes", "remap", "ignore_index")


def get_dotted(config: Mapping[str, Any], option: str) -> Any:
    """The value of a dotted option (``train.augment.hflip``) in a nested config; KeyError
    naming the option where a section or the option is missing."""
    node: Any = config
    for part in option.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(option)
        node = node[part]
    return node


def has_dotted(config: Mapping[str, Any], option: str) -> bool:
    """Whether a nested config gives the dotted option (its value may be None)."""
    try:
        get_dotted(config, option)
    except KeyError:
        return False
    return True


def set_dotted(config: dict[str, Any], option: str, value: Any) -> None:
    """Set a dotted option in a nested config, making the sections on its way."""
    *sections, last = option.split(".")
    for section in sections:
        config = config.setdefault(section, {})
    config[last] = value


def option_class(option: str) -> str:
    """The class of a dotted option (``train.lr``, ``resources.train.mem_mb``): its own entry
    in :data:`OPTION_CLASSES`, else its nearest section's. KeyError for an option of no class."""
    parts = option.split(".")
    for end in range(len(parts), 0, -1):
        found = OPTION_CLASSES.get(".".join(parts[:end]))
        if found is not None:
            return found
    raise KeyError(f"option '{option}' has no class in segpipe.params.OPTION_CLASSES")


def _untracked_options() -> dict[str, tuple[str, ...]]:
    grouped: dict[str, tuple[str, ...]] = {}
    for option, kind in OPTION_CLASSES.items():
        section, _, name = option.partition(".")
        if name and kind == NOTHING:
            grouped[section] = (*grouped.get(section, ()), name)
    return grouped


# Section -> its options that change how fast a job runs or how training is watched, not what
# any job writes (class ``nothing``): speed settings (loader workers, prediction batches,
# download retries and time-outs) and the training loggers (whose files are no rule's outputs).
UNTRACKED_OPTIONS: dict[str, tuple[str, ...]] = _untracked_options()


class Untracked(Mapping):
    """A mapping param that Snakemake hands to the job but does not compare between runs."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Untracked({self._values!r})"


def tracked(section: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a config ``section`` that change what a job writes."""
    untracked = UNTRACKED_OPTIONS.get(section, ())
    return {k: v for k, v in options.items() if k not in untracked}


def untracked(section: str, options: Mapping[str, Any]) -> Untracked:
    """The options of a config ``section`` that change only how a job runs."""
    names = UNTRACKED_OPTIONS.get(section, ())
    return Untracked({k: v for k, v in options.items() if k in names})


def run_summary(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config as its report shows it: without the options no result depends on (the
    untracked ones, resources, split.val_fraction with folds, where pretrained weights are
    cached) and without compare (the comparison's options, not the run's)."""
    summary = {k: v for k, v in cfg.items() if k not in ("resources", "compare", "pretrained")}
    for section in UNTRACKED_OPTIONS:
        if isinstance(summary.get(section), Mapping):
            summary[section] = tracked(section, summary[section])
    split = summary.get("split")
    if isinstance(split, Mapping) and split.get("folds") is not None:
        summary["split"] = {k: v for k, v in split.items() if k != "val_fraction"}
    return summary
