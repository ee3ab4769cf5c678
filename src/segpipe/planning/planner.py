"""``segpipe plan``'s steps in order: fingerprint, classes, split, geometry, the batch-size probe
(shrinking the input until a batch of 2 fits), epochs, loss, jobs, names; then the planned config
and the fingerprint, written once the config validates.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segpipe.data.images import DEFAULT_MAX_IMAGE_PIXELS
from segpipe.io import write_json, write_text
from segpipe.models.model_input import ModelInput
from segpipe.params import set_dotted
from segpipe.planning import rules
from segpipe.planning.fingerprint import DEFAULT_SAMPLE, fingerprint_dataset
from segpipe.planning.probe import ProbeSpec, run_probe
from segpipe.planning.render import check_planned, render
from segpipe.planning.rules import Choice, PlanError, Target
from segpipe.workflow.config import load_schema

logger = logging.getLogger(__name__)


@dataclass
class PlanRequest:
    """What ``segpipe plan`` was given: the dataset options (as verify takes them), what the user
    says of the labels (table or colours, ignored value, ignore_index, class names), the
    dataset's name, the target, and how to read."""

    dataset: dict[str, Any]
    given: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    target: Target = field(default_factory=Target)
    sample: int | None = DEFAULT_SAMPLE
    seed: int = 0
    threads: int = 1

    @classmethod
    def from_options(
        cls,
        options: dict[str, Any],
        *,
        name: str | None,
        target: Target,
        sample: int | None,
        seed: int,
        threads: int = 1,
    ) -> PlanRequest:
        """A request from verify-style options (:func:`partial_config`, the command line)."""
        dataset = {key: options.get(key) for key in DATASET_KEYS}
        dataset["layout"] = dataset["layout"] or "folder"
        dataset["mask_suffix"] = dataset["mask_suffix"] or ""
        if dataset["max_image_pixels"] is None:
            dataset["max_image_pixels"] = DEFAULT_MAX_IMAGE_PIXELS
        given = {
            "table": options.get("table"),
            "colors": options.get("colors"),
            "ignore_value": options.get("ignore_value"),
            "ignore_index": options.get("ignore_index") or 255,
            "classes": options.get("class_names"),
            "name": options.get("name"),
        }
        return cls(dataset, given, name, target, sample or None, seed, threads)


DATASET_KEYS = (
    "root",
    "layout",
    "images_dir",
    "masks_dir",
    "mask_suffix",
    "split_lists",
    "max_image_pixels",
)
PARTIAL_OPTIONS = ("dataset", "classes", "remap", "ignore_index")
"""What a partial config given to ``segpipe plan --configfile`` may hold: the rest is planned."""


def partial_config(path: Path) -> dict[str, Any]:
    """Verify-style options from a partial config (dataset, classes, remap, ignore_index),
    validated against the schema; the table, colours, ignored value and classes only where the
    file gives them (not the schema's defaults)."""
    from segpipe.planning.render import default_schema
    from segpipe.workflow.config import (
        ConfigError,
        dataset_options,
        load_config_file,
        validate_config,
    )

    raw = load_config_file(path)
    extra = sorted(set(raw) - set(PARTIAL_OPTIONS))
    if extra:
        raise ConfigError(
            f"config file '{path}': {', '.join(extra)} are planned, not read; give only "
            f"{', '.join(PARTIAL_OPTIONS)}"
        )
    dataset = dict(raw.get("dataset") or {})
    if dataset.setdefault("source", "folder") != "folder":
        raise ConfigError(
            f"config file '{path}': dataset.source {dataset['source']}: segpipe plan reads a "
            "folder (source: folder; a local copy of Oxford-IIIT Pet is layout: oxford)"
        )
    remap = dict(raw.get("remap") or {})
    placeholder = [f"class_{i}" for i in range(255)]  # validates the table's ids, not the names
    checked = validate_config(
        {
            "dataset": dataset,
            "remap": remap,
            "classes": raw.get("classes") or placeholder,
            "ignore_index": raw.get("ignore_index", 255),
            "evaluate": {"foreground_classes": None},
        },
        load_schema(default_schema()),
        check_models=False,
    )
    options = dataset_options(checked)
    return {
        **options,
        "root": checked["dataset"].get("root"),
        "name": dataset.get("name"),
        "table": checked["remap"]["table"] if remap.get("table") else None,
        "colors": checked["remap"]["colors"] or None,
        "ignore_value": remap.get("ignore_value"),
        "class_names": raw.get("classes"),
    }


def resolve_target(args) -> Target:
    """The target from ``segpipe plan``'s options: the device (auto: CUDA where a child process's
    torch sees one), its memory budget, input size and batch limits."""
    from segpipe.planning.probe import ProbeError, cuda_memory_mb, host_memory_mb

    device, total = args.device, None
    if device in ("auto", "cuda"):
        total = cuda_memory_mb()
        if device == "cuda" and total is None:
            raise ProbeError("--device cuda: no CUDA device is visible here; plan on a GPU machine")
        device = "cuda" if total else "cpu"
    if args.memory_gb is not None:
        budget = args.memory_gb * 1024
    elif device == "cuda":
        budget = 0.85 * (total or 0)
    else:
        budget = min(16 * 1024, host_memory_mb() / 4)
    for option, value in (
        ("--memory-gb", budget),
        ("--max-batch", args.max_batch),
        ("--hours", args.hours or 1),
    ):
        if value <= 0:
            raise ValueError(f"{option} must be above 0")
    if args.max_size is not None and (
        args.max_size < rules.MIN_SIZE or args.max_size % rules.STRIDE
    ):
        raise ValueError(
            f"--max-size {args.max_size}: a multiple of {rules.STRIDE}, at least {rules.MIN_SIZE}"
        )
    return Target(
        device=device,
        memory_mb=int(budget),
        max_size=args.max_size or (512 if device == "cuda" else 256),
        max_batch=max(rules.MIN_BATCH, args.max_batch),
        hours=args.hours,
        any_orientation=args.any_orientation,
        threads=min(8, os.cpu_count() or 1),
        search=args.search,
    )


def is_planned_config(path: Path) -> bool:
    """Whether ``path`` holds a config that ``segpipe plan`` wrote (its header's first line):
    the only config ``--out --overwrite`` replaces."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline().startswith("# Planned by `segpipe plan`")
    except (OSError, ValueError):
        return False


def is_fingerprint(path: Path) -> bool:
    """Whether ``path`` holds a fingerprint that ``segpipe plan`` wrote."""
    import json

    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and "fingerprint_version" in found


def output_paths(
    out: Path | None, fingerprint: Path | None, request: PlanRequest, overwrite: bool
) -> tuple[Path, Path]:
    """Where the config and the fingerprint go (default: config/<run name>.yaml, or ./ without a
    config folder, and <that>.fingerprint.json), checked before the dataset is read."""
    from segpipe.outputs import Read, check_file

    if out is None:
        fp = {"dataset": {"root": request.dataset["root"]}}
        run = rules.names(fp, request.name or request.given.get("name"), "")["run_name"].value
        out = (Path("config") if Path("config").is_dir() else Path(".")) / f"{run}.yaml"
    fingerprint = fingerprint or out.with_name(f"{out.stem}.fingerprint.json")
    if out.resolve() == fingerprint.resolve():
        raise ValueError(f"--out and --fingerprint are one file: {out}")
    reads = [Read(Path(request.dataset["root"]), "the dataset")]
    for path, option, own, what in (
        (out, "--out", is_planned_config, "a config segpipe plan wrote"),
        (fingerprint, "--fingerprint", is_fingerprint, "a fingerprint segpipe plan wrote"),
    ):
        if path.exists() and not path.is_dir() and not overwrite:
            raise ValueError(f"{option} {path}: exists; --overwrite replaces it")
        check_file(path, option, own=own, what=what, reads=reads)
    return out, fingerprint


@dataclass
class Plan:
    """The planned options (dotted name -> Choice), the fingerprint with the probe, and the
    config with its comments."""

    choices: dict[str, Choice]
    fingerprint: dict[str, Any]
    config: dict[str, Any]
    comments: dict[str, str]


def plan_dataset(request: PlanRequest) -> Plan:
    """Fingerprint the dataset and plan every option (see the module docstring)."""
    fp = fingerprint_dataset(
        **request.dataset, sample=request.sample, seed=request.seed, threads=request.threads
    )
    return plan_fingerprint(fp, request)


def plan_fingerprint(
    fp: dict, request: PlanRequest, probe: Callable[[ProbeSpec], dict] = run_probe
) -> Plan:
    """Plan every option from a fingerprint; ``probe`` measures the batches (the real probe, or
    a model of one in the tests)."""
    target = request.target
    choices: dict[str, Choice] = {"remap.max_quarantine_fraction": rules.usable_pairs(fp)}
    labels = _labels(fp, request.given)
    classes = rules.class_figures(fp, labels)
    choices.update(_label_choices(labels))
    choices.update(rules.split(fp, target))
    train_pairs, val_pairs = rules.split_sizes(fp, choices)
    choices.update(rules.loss(classes))
    geometry, measured, batch = _probe_until_it_fits(
        fp, labels, choices, train_pairs, target, probe
    )
    choices.update(_geometry_choices(geometry))
    choices.update(rules.network(geometry.image_size, train_pairs))
    choices["train.batch_size"] = batch
    fp = {**fp, "probe": measured}
    choices.update(
        _time_and_jobs(fp, geometry, measured, batch.value, train_pairs, val_pairs, choices, target)
    )
    choices["evaluate.foreground_classes"] = rules.foreground(classes)
    choices["train.augment"] = rules.augmentation(target)
    ignore_index = request.given.get("ignore_index") or 255
    choices["ignore_index"] = Choice(ignore_index, "given" if ignore_index != 255 else "")
    name = request.name or request.given.get("name")
    choices.update(rules.names(fp, name, choices["train.encoder"].value))
    config, comments = assemble(request, choices)
    return Plan(choices, fp, config, comments)


def _labels(fp: dict, given: dict[str, Any]) -> rules.Labels:
    """The user's table or colours when given; else planned from the values, with the user's
    ignored value and class names when given."""
    if given.get("table") or given.get("colors"):
        return rules.given_labels(fp, given)
    ignore = given.get("ignore_value")
    planned = rules.labels(
        fp, Choice(ignore, "given") if ignore is not None else rules.ignored_value(fp)
    )
    names = given.get("classes")
    if not names:
        return planned
    if len(names) != len(planned.classes):
        raise PlanError(
            f"classes: {len(names)} names given, but the masks hold {len(planned.classes)} class "
            f"values {[k[0] for k in planned.keys]}: give remap.table (--table) too"
        )
    return rules.Labels(
        planned.table,
        planned.colors,
        planned.ignore_value,
        list(names),
        planned.keys,
        {**planned.why, "classes": "given; " + planned.why["classes"]},
    )


def _label_choices(labels: rules.Labels) -> dict[str, Choice]:
    why = labels.why
    return {
        "classes": Choice(labels.classes, why.get("classes", "")),
        "remap.table": Choice(labels.table, why.get("remap.table", ""))
        if labels.table
        else Choice({}, "colour masks: remap.colors"),
        "remap.colors": Choice(labels.colors, why.get("remap.colors", ""))
        if labels.colors
        else Choice([], "single-channel masks: remap.table"),
        "remap.ignore_value": Choice(labels.ignore_value, why.get("remap.ignore_value", "")),
    }


def _probe_until_it_fits(fp, labels, choices, train_pairs, target, run):
    """The probe at the planned geometry; a stride smaller until a batch of 2 fits."""
    classes = rules.class_figures(fp, labels)
    geometry: rules.Geometry | None = rules.geometry(fp, classes, target)
    cap = rules.batch_cap(train_pairs, target)
    while geometry is not None:
        net = rules.network(geometry.image_size, train_pairs)
        spec = ProbeSpec(
            arch=net["train.arch"].value,
            encoder=net["train.encoder"].value,
            encoder_depth=net["train.encoder_depth"].value,
            decoder_channels=net["train.decoder_channels"].value,
            classes=len(labels.classes),
            loss=choices["train.loss"].value,
            class_weights=choices["train.class_weights"].value,
            image_size=geometry.image_size,
            device=target.device,
            batches=rules.probe_batches(cap),
            budget_mb=target.memory_mb,
            threads=target.threads,
        )
        logger.warning(
            "probing batch sizes %s at %d px on %s", spec.batches, spec.image_size, spec.device
        )
        probe = run(spec)
        batch = rules.batch_size(probe["trials"], target, cap)
        if batch is not None:
            return geometry, probe, batch
        last = geometry.image_size
        geometry = geometry.shrunk()
    first = probe["trials"][0]
    shown = "out of memory" if first.get("oom") else f"{first.get('peak_mb', 0):.0f} MB"
    raise PlanError(
        f"a batch of {rules.MIN_BATCH} does not fit in {target.memory_mb} MB on {target.device} "
        f"even at {last} px (measured {shown}); raise --memory-gb"
    )


def _geometry_choices(geometry: rules.Geometry) -> dict[str, Choice]:
    model_input, why = geometry.model_input, geometry.why
    return {
        "train.resize": Choice(geometry.resize, why["train.resize"]),
        "train.image_size": Choice(geometry.image_size, why["train.image_size"]),
        "train.image_scale": Choice(
            geometry.image_scale, why.get("train.image_scale", "unused when squashing")
        ),
        "predict.mode": Choice(
            model_input.default_mode,
            "windows of the training size at the training scale"
            if model_input.keeps_aspect
            else "whole images, as trained",
        ),
    }


def _scaled_pixels(fp: dict, geometry: rules.Geometry, quantile: str) -> float:
    """Pixels of a preprocessed image: image_size² squashed, the scaled image kept at scale."""
    if not geometry.model_input.keeps_aspect:
        return float(geometry.image_size**2)
    images, scale = fp["images"], geometry.image_scale
    return images["width"][quantile] * scale * images["height"][quantile] * scale


def _time_and_jobs(fp, geometry, probe, batch, train_pairs, val_pairs, choices, target):
    """Epochs (from the probe's step time), the schedule's warm-up and the jobs' resources."""
    trial = next(t for t in probe["trials"] if t["batch"] == batch)
    measured = rules.Measured(trial["peak_mb"], probe["baseline_mb"], trial["step_s"])
    crop = geometry.image_size**2
    whole = _scaled_pixels(fp, geometry, "median") / crop  # a validation image, in crops
    epoch_s = rules.epoch_seconds(train_pairs, val_pairs, batch, measured.step_s, whole)
    folds = choices["split.folds"].value
    chosen = {"train.epochs": rules.epochs(train_pairs, batch, epoch_s, folds or 1, target.hours)}
    count = chosen["train.epochs"].value
    chosen["train.warmup_epochs"] = Choice(
        1 if count >= 10 else 0, "one epoch when there are 10 or more"
    )
    test_pairs = fp["pairs"]["usable"] - train_pairs - val_pairs
    predicted = (val_pairs + test_pairs) * whole * measured.step_s * rules.FORWARD_SHARE / batch
    arrays_mb = (train_pairs + val_pairs) * _scaled_pixels(fp, geometry, "max") * 4 / 1e6
    chosen.update(
        rules.resources(
            fp,
            measured,
            target=target,
            arrays_mb=arrays_mb,
            train_minutes=count * epoch_s / 60,
            predict_minutes=predicted / 60,
        )
    )
    chosen["search"] = rules.search(
        target,
        lr=choices["train.lr"].value,
        loss_name=choices["train.loss"].value,
        encoder=choices["train.encoder"].value,
        epochs=count,
    )
    return chosen


FIXED: dict[str, Choice] = {
    "dataset.source": Choice("folder", ""),
    "remap.unmapped": Choice("error", "a value not planned for stops remap, naming it"),
    "split.seed": Choice(42, ""),
    "split.stratify": Choice(True, ""),
    "train.weight_decay": Choice(1e-4, ""),
    "train.scheduler": Choice("cosine", ""),
    "train.seed": Choice(0, ""),
    "train.amp": Choice("auto", "bf16 on CUDA, off on the CPU"),
    "predict.overlap": Choice(0.5, ""),
    "report.gallery_size": Choice(3, ""),
}


ORDER = (
    "run_name",
    *(f"dataset.{key}" for key in ("source", "name", *DATASET_KEYS[:-1], "max_image_pixels")),
    "classes",
    *(f"remap.{key}" for key in ("table", "colors", "ignore_value", "unmapped")),
    "remap.max_quarantine_fraction",
    "ignore_index",
    *(f"split.{key}" for key in ("seed", "use_official", "test_fraction", "val_fraction")),
    "split.folds",
    "split.stratify",
    *(f"train.{key}" for key in ("arch", "encoder", "encoder_weights", "encoder_depth")),
    *(f"train.{key}" for key in ("decoder_channels", "loss", "class_weights", "lr")),
    *(f"train.{key}" for key in ("weight_decay", "scheduler", "warmup_epochs", "epochs")),
    *(f"train.{key}" for key in ("batch_size", "resize", "image_size", "image_scale")),
    *(f"train.{key}" for key in ("augment", "seed", "device", "gpus", "amp")),
    *(f"predict.{key}" for key in ("batch_size", "mode", "overlap", "ensemble")),
    "evaluate.foreground_classes",
    "report.title",
    "report.gallery_size",
    "search",
    *(f"resources.{rule}" for rule in ("download", "remap", "split", "preprocess")),
    *(f"resources.{rule}" for rule in ("train", "predict", "evaluate", "report")),
)
"""The planned config's options in the order it lists them."""


def assemble(request: PlanRequest, choices: dict[str, Choice]) -> tuple[dict, dict]:
    """The config (options in :data:`ORDER`) and its comments by dotted name."""
    values = {**FIXED, **choices}
    values["train.device"] = Choice(request.target.device, "the target device (--device)")
    values["predict.batch_size"] = Choice(
        2 * choices["train.batch_size"].value,
        "twice the training batch: a forward pass keeps nothing for a backward one",
    )
    dataset = {k: v for k, v in request.dataset.items() if v not in (None, "", {})}
    if dataset.get("max_image_pixels") == DEFAULT_MAX_IMAGE_PIXELS:
        del dataset["max_image_pixels"]
    for key, value in dataset.items():
        values[f"dataset.{key}"] = Choice(value, "")
    unplaced = set(values) - set(ORDER)
    assert not unplaced, f"planned options without a place: {unplaced}"
    config: dict[str, Any] = {}
    comments: dict[str, str] = {}
    for dotted in ORDER:
        if dotted not in values or (dotted == "search" and values[dotted].value is None):
            continue
        set_dotted(config, dotted, values[dotted].value)
        if values[dotted].why:
            comments[dotted] = values[dotted].why
    return config, comments


def header(fp: dict, out: Path, fingerprint_path: Path) -> list[str]:
    pairs, sample = fp["pairs"], fp["sample"]
    read = (
        f"a seeded sample of {sample['pairs']} of its {sample['of']} pairs (seed {sample['seed']})"
        if sample
        else f"all {pairs['found']} pairs"
    )
    return [
        f"Planned by `segpipe plan` from {fp['dataset']['root']}:",
        f"{read} read, {pairs['usable']} usable; the fingerprint: {fingerprint_path}.",
        "Each planned option's comment gives the figure it came from (the rules are in",
        "docs/planning.md); edit any of them. Run it with:",
        f"  snakemake --configfile {out} --cores all",
    ]


def write_plan(plan: Plan, out: Path, fingerprint_path: Path, schema_path: Path) -> dict:
    """Validate the planned config, then write the fingerprint and the config (each whole or
    not at all); returns the validated config."""
    text = render(plan.config, plan.comments, header(plan.fingerprint, out, fingerprint_path))
    validated = check_planned(text, plan.config, load_schema(schema_path))
    write_json(fingerprint_path, plan.fingerprint)
    write_text(out, text)
    return validated


def summary_lines(plan: Plan, out: Path, fingerprint: Path) -> list[str]:
    """What ``segpipe plan`` prints: the files, the main choices and the command to run."""
    c = {key: choice.value for key, choice in plan.choices.items()}
    pairs = plan.fingerprint["pairs"]
    model_input = ModelInput.from_train(
        {key: c[f"train.{key}"] for key in ("resize", "image_size", "image_scale")}
    )
    size = (
        f"kept at scale {model_input.scale:g}, crops of {model_input.size}"
        if model_input.keeps_aspect
        else f"squashed to {model_input.size}"
    )
    folds = f", {c['split.folds']} folds" if c["split.folds"] else ""
    return [
        f"wrote {out} (the planned config) and {fingerprint} (the fingerprint)",
        f"{pairs['read']} of {pairs['found']} pairs read, {pairs['usable']} usable; "
        f"{len(c['classes'])} classes: {', '.join(c['classes'][:8])}"
        + (", ..." if len(c["classes"]) > 8 else ""),
        f"images {size}; batch {c['train.batch_size']} ({plan.choices['train.batch_size'].why})",
        f"{c['train.encoder']} UNet, loss {c['train.loss']}, {c['train.epochs']} epochs{folds}"
        f" ({plan.choices['train.epochs'].why})",
        f"run it: snakemake --configfile {out} --cores all",
    ]
