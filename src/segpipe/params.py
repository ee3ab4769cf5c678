"""Which options reach a rule's job without rerunning it when they change.

Snakemake reruns a job when one of its ``params:`` changes (``--rerun-triggers params``, on by
default), and every job downstream of it after. Options that change how fast a job runs or how
it is watched, not what it writes, must not do that: a changed ``train.num_workers`` would train
every model again from scratch. Such options reach the job as an :class:`Untracked` param, which
Snakemake passes on but leaves out of the params it records and compares (it records only
params of Python's built-in types).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Section -> its options that change how fast a job runs or how training is watched, not what
# any job writes: speed settings (loader workers, prediction batches, download retries and
# time-outs) and the training loggers (whose files are no rule's outputs).
UNTRACKED_OPTIONS: dict[str, tuple[str, ...]] = {
    "dataset": ("retries", "timeout"),
    "train": ("num_workers", "log_to", "log_images_every"),
    "predict": ("batch_size",),
}


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
