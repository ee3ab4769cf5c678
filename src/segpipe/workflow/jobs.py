"""What a rule's job receives of a run's config, one shape per config section.

Each section reaches its jobs as :class:`Options`: ``tracked``, the options that change what
the job writes (a param Snakemake compares, so a change reruns the job), and ``untracked``,
those that change only how it runs (:class:`segpipe.params.Untracked`: a change reruns nothing).
The rules pass both to the job's script, which passes them on as keyword arguments.
Rule predict (a model's splits) and rules infer and infer_selected (the images of
infer.images) read the ``predict`` section through the one :func:`prediction`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from segpipe.data import predictions
from segpipe.params import Untracked, tracked, untracked


@dataclass(frozen=True)
class Options:
    """A config section as a job receives it: what changes its outputs, and what does not."""

    tracked: dict[str, Any]
    untracked: Untracked


def section(name: str, options: Mapping[str, Any]) -> Options:
    """The options of config section ``name`` split by segpipe.params.UNTRACKED_OPTIONS."""
    return Options(tracked(name, options), untracked(name, options))


def training(cfg: Mapping[str, Any], train: Mapping[str, Any] | None = None) -> Options:
    """A run's train section for rule train (or ``train``: a search rung's own options, with
    its epochs; the untracked ones are always the run's)."""
    options = section("train", cfg["train"])
    if train is None:
        return options
    return Options(tracked("train", train), options.untracked)


def dataset(cfg: Mapping[str, Any]) -> Options:
    """The dataset section for rule download: its retries and timeout, untracked."""
    return Options({}, untracked("dataset", cfg["dataset"]))


def prediction(cfg: Mapping[str, Any], *, folder: bool = False) -> Options:
    """A run's predict section (with train.device and train.amp) for rule predict, or with
    ``folder`` for the images of infer.images: whether overlays are drawn and then their
    overlay_alpha (segpipe.data.predictions: split_overlays, folder_overlays), the tta flips
    (left out when there are none), sliding windows' mode and overlap (left out for the default
    whole-image mode; a model's splits only), device, amp; batch_size untracked."""
    predict = cfg["predict"]
    overlays = (predictions.folder_overlays if folder else predictions.split_overlays)(predict)
    sliding = predict["mode"] == "sliding" and not folder
    options = {
        **(
            {"with_overlays": True, "overlay_alpha": predict["overlay_alpha"]}
            if overlays
            else {"with_overlays": False}
        ),
        **({"tta": predict["tta"]} if predict["tta"] else {}),
        **({"mode": "sliding", "overlap": predict["overlap"]} if sliding else {}),
        "device": cfg["train"]["device"],
        "amp": cfg["train"]["amp"],
    }
    return Options(tracked("predict", options), untracked("predict", predict))


def selected_prediction(
    configs: Mapping[str, Mapping[str, Any]], checkpoints: Mapping[str, list[str]]
) -> tuple[dict[str, dict[str, Any]], Untracked]:
    """What rule infer_selected receives of each run (``configs``: name -> its config), since
    the comparison may select any: its ``checkpoints`` and tracked prediction options, and its
    untracked ones, per run."""
    options = {run: prediction(cfg, folder=True) for run, cfg in configs.items()}
    models = {run: {"checkpoints": checkpoints[run], **o.tracked} for run, o in options.items()}
    return models, Untracked({run: dict(o.untracked) for run, o in options.items()})
