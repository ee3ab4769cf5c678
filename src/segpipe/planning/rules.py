"""The planning rules: small pure functions from a dataset fingerprint
(:mod:`segpipe.planning.fingerprint`, a JSON-ready dict) and the target (:class:`Target`) to the
options of a planned config. Each planned option is a :class:`Choice`: its value and the figure
it came from, which the planned config prints beside it. docs/planning.md has them in one table.

A rule that cannot plan raises :class:`PlanError`, one line naming the figure.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from segpipe.logs import UserError
from segpipe.models.model_input import KEEP_ASPECT, SQUASH, ModelInput

Fingerprint = dict[str, Any]


class PlanError(UserError, ValueError):
    """The dataset (or an option) cannot be planned for; the message names the figure."""


@dataclass(frozen=True)
class Choice:
    """A planned option's value and why (a one-line comment in the planned config)."""

    value: Any
    why: str = ""


@dataclass(frozen=True)
class Target:
    """Where and how the planned run trains (``segpipe plan``'s options)."""

    device: str = "cpu"  # cpu | cuda
    memory_mb: int = 8000  # a training process's budget: RSS on the CPU, allocated on CUDA
    max_size: int = 256  # the largest training input side (a squashed image or a crop)
    max_batch: int = 32
    hours: float | None = None  # wall-clock budget of the whole training
    any_orientation: bool = False  # the images have no canonical orientation
    threads: int = 4
    search: int | None = None  # candidates of a successive-halving search


# ----------------------------------------------------------------------------- constants

DEFAULT_SAMPLE = 1000
"""Pairs read at most unless told otherwise: a larger dataset is read as a seeded sample."""
MIN_PAIRS = 5
"""Fewer usable pairs cannot be split: 2 to train (BatchNorm), 1 to validate, 1 to test."""
MAX_UNUSABLE = 0.5
"""Past this fraction of unusable pairs the plan is refused: fix the data first."""
INTENSITY_VALUES = 64
"""Masks holding more distinct values than this (the median mask) are intensity images."""
MAX_CLASS_VALUES = 255
"""More distinct values (or colours) than this cannot be class ids (uint8, one for ignore)."""
MIN_WIDTH = 2
"""The thinnest structures (5th percentile of a class's pixels) must stay this wide (pixels)."""
STRIDE = 32
"""The network's total stride: image sizes are multiples of it (config/schema.yaml)."""
MIN_SIZE = 32
SQUARE_ASPECT = (0.8, 1.25)
"""Median aspect ratios (width / height) this close to 1 may be squashed to a square."""
MAX_ASPECT_SPREAD = 1.25
"""p90 / p10 of the aspect ratio, and of the width and height, above which sizes vary too much
to squash (an image squashed differently from the next teaches the wrong shapes)."""
MAX_SIZE_SPREAD = 1.5
WHOLE_SIDE = 2
"""Validation and prediction see whole images: their scaled longer side stays within this many
times --max-size, even where that thins the thinnest structures."""
BOTTLENECK = 4
"""The smallest feature map of the encoder (pixels): its depth is the most that keeps it."""
LARGE_DATASET = 1000
"""Training pairs from which the deeper ResNet-34 encoder pays off."""
DECODER = [256, 128, 64, 32, 16]
LR = 1e-3
BATCH_SHARE = 0.05
"""A batch holds at most this share of the training pairs (nnU-Net's 5%), and at least 2."""
MIN_BATCH = 2
STEP_BUDGET = 2500
"""Optimizer steps a model trains for (epochs = this / steps per epoch, within the bounds)."""
EPOCH_BOUNDS = (5, 200)
FORWARD_SHARE = 1 / 3
"""A forward pass takes about this share of a training step (forward and backward)."""
FOLDS_BELOW = 30
"""A train/val pool of fewer pairs is cross-validated (5 folds) rather than split once."""
FOLDS = 5
VAL_IMAGES = 50
"""Validation images wanted; the fraction is clamped to VAL_FRACTION."""
VAL_FRACTION = (0.05, 0.2)
TEST_IMAGES = 200
TEST_FRACTION = (0.05, 0.2)
WEIGHT_RATIO = 50
"""Largest over smallest class share above which the cross-entropy is weighted."""
WEIGHT_BOUNDS = (0.25, 4.0)
BACKGROUND = (0.3, 0.9)
"""A class with this pixel share and image share at least is the background of a foreground IoU
(datasets of 2 or 3 classes)."""
MEMORY_MARGIN = 1.3
"""Slurm memory requests: the measured peak times this, plus the data arrays."""
RUNTIME_MARGIN = 1.5
GENERIC_NAMES = {"train", "training", "data", "dataset", "images", "image", "trainval", "all"}


# ----------------------------------------------------------------------------- helpers


def figure(value: float) -> str:
    """A figure as the comments write it: 512, 0.67, 1.5e-05."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def pct(share: float) -> str:
    return f"{100 * share:.1f}%" if share >= 0.001 else f"{100 * share:.2g}%"


def median_size(fp: Fingerprint) -> tuple[int, int]:
    """(width, height) of the median image."""
    return int(fp["images"]["width"]["median"]), int(fp["images"]["height"]["median"])


def round_to_stride(pixels: float, low: int = MIN_SIZE, high: int | None = None) -> int:
    """The nearest multiple of :data:`STRIDE` (halves up), within [low, high]."""
    size = max(low, STRIDE * math.floor(pixels / STRIDE + 0.5))
    return size if high is None else min(size, high)


def slug(text: str) -> str:
    """A run name from a dataset name: letters, digits and . _ + - (config/schema.yaml)."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-._+")
    return (name or "dataset")[:100]


# ----------------------------------------------------------------------------- the data


def usable_pairs(fp: Fingerprint) -> Choice:
    """remap.max_quarantine_fraction: refuses a dataset with too few usable pairs or mostly
    unusable ones, naming the first problem; else room above the unusable share found (remap
    fails past it)."""
    pairs = fp["pairs"]
    read, usable = pairs["read"] + pairs["unpaired_files"], pairs["usable"]
    if pairs["found"] == 0:
        raise PlanError(
            f"{fp['dataset']['root']}: no image/mask pairs found ({pairs['unpaired_files']} "
            f"unpaired files, {pairs['stray_files']} stray files){first_problem(fp)}"
        )
    if usable < MIN_PAIRS:
        raise PlanError(
            f"{usable} usable pair(s) of {pairs['found']}: at least {MIN_PAIRS} are needed "
            f"(2 to train, 1 to validate, 1 to test){first_problem(fp)}"
        )
    lost = (read - usable) / read
    if lost > MAX_UNUSABLE:
        raise PlanError(
            f"{read - usable} of {read} pairs are unusable ({pct(lost)}){first_problem(fp)}; "
            "fix them before planning"
        )
    fraction = max(0.1, math.ceil((lost + 0.05) * 20) / 20) if lost else 0.1
    return Choice(fraction, f"{read - usable} of {read} pairs read are unusable ({pct(lost)})")


def first_problem(fp: Fingerprint) -> str:
    """The fingerprint's problem count and first problem, for a refusal (a refused plan writes
    no fingerprint; segpipe verify lists them all); empty without problems."""
    problems = fp["quarantine"]
    if not problems:
        return ""
    first = problems[0]
    return (
        f"; {len(problems)} problem(s), the first: {first['file']}: {first['problem']} "
        "(segpipe verify with the same dataset options lists them all)"
    )


@dataclass(frozen=True)
class Labels:
    """How the masks become classes: the remap table or colours, the ignored value, the class
    names, and per class the raw keys (values or [r, g, b]) it holds."""

    table: dict[int, int]
    colors: list[dict]
    ignore_value: int | None
    classes: list[str]
    keys: list[list[Any]]
    why: dict[str, str] = field(default_factory=dict)


def _values_row(fp: Fingerprint, key: Any) -> dict | None:
    return next((v for v in fp["values"] if v["value"] == key), None)


def _share(fp: Fingerprint, key: Any) -> float:
    """The pixel share of a raw key found (0 for one not found)."""
    row = _values_row(fp, key)
    return row["share"] if row else 0.0


def intensity_check(fp: Fingerprint) -> None:
    """Refuse masks whose values look like intensities (hundreds of levels) or a mixture of
    colour and single-channel masks."""
    masks = fp["masks"]
    if masks["encoding"] == "mixed":
        raise PlanError(
            f"masks mix RGB colour masks and single-channel ones (modes {masks['modes']}): "
            "save them all one way"
        )
    per_mask = (masks["distinct_per_mask"] or {}).get("median", 0)
    kind = "colours" if masks["encoding"] == "colours" else "values"
    if per_mask > INTENSITY_VALUES or masks["distinct"] > MAX_CLASS_VALUES:
        raise PlanError(
            f"the masks hold {masks['distinct']} distinct {kind}, {figure(per_mask)} in the "
            f"median mask: intensity images (a photo, a probability map), not class labels"
        )


def is_class_ids(values: list[int]) -> bool:
    """Consecutive integers from 0 or 1: class ids as written."""
    return (
        len(values) >= 2
        and values[0] in (0, 1)
        and values == list(range(values[0], values[-1] + 1))
    )


def ignored_value(fp: Fingerprint) -> Choice:
    """remap.ignore_value: 255 beside consecutive class ids (VOC's object boundaries,
    'unlabelled'); none otherwise (255 in 0/255 masks is a class)."""
    if fp["masks"]["encoding"] == "colours":
        return Choice(None, "colour masks: every colour is a class")
    values = [v["value"] for v in fp["values"]]
    others = [v for v in values if v != 255]
    if 255 in values and is_class_ids(others):
        share = _share(fp, 255)
        return Choice(
            255,
            f"255 ({pct(share)} of the pixels) beside class ids {others[0]}..{others[-1]}: "
            "boundaries or unlabelled pixels, ignored",
        )
    return Choice(None, "no value stands apart from the others")


def _encoding_name(fp: Fingerprint, values: list) -> str:
    if fp["masks"]["encoding"] == "colours":
        return "RGB colour masks"
    if fp["masks"]["palette"]:
        return "palette masks: the palette indices are the values"
    if values == [0, 255]:
        return "binary 0/255 masks"
    if is_class_ids(values):
        return f"class ids {values[0]}..{values[-1]}"
    return f"{len(values)} grey levels"


def class_name(key: Any) -> str:
    return "class_" + ("_".join(str(c) for c in key) if isinstance(key, list) else str(key))


def labels(fp: Fingerprint, ignore: Choice) -> Labels:
    """Classes, remap table (or colours) and ignored value from the mask values found: every
    value (or colour) not ignored is a class, in sorted order, named after its value."""
    intensity_check(fp)
    keys = [v["value"] for v in fp["values"] if v["value"] != ignore.value]
    if len(keys) < 2:
        raise PlanError(
            f"the masks hold a single class value ({keys or 'none'} besides the ignored one): "
            "nothing to tell apart"
        )
    names = [class_name(k) for k in keys]
    kind = _encoding_name(fp, [v["value"] for v in fp["values"]])
    listed = ", ".join(f"{k} ({pct(_share(fp, k))})" for k in keys[:12])
    more = f", ... {len(keys)} in all" if len(keys) > 12 else ""
    why = {
        "classes": f"one class per mask value found: {listed}{more}",
        "remap.ignore_value": ignore.why,
    }
    if fp["masks"]["encoding"] == "colours":
        colors = [{"color": list(k), "class": i} for i, k in enumerate(keys)]
        why["remap.colors"] = f"{kind}: each colour found is a class, in sorted order"
        return Labels({}, colors, None, names, [[k] for k in keys], why)
    table = {int(k): i for i, k in enumerate(keys)}
    why["remap.table"] = f"{kind}: value -> class id in sorted order"
    return Labels(table, [], ignore.value, names, [[k] for k in keys], why)


def given_labels(fp: Fingerprint, given: dict[str, Any]) -> Labels:
    """The user's remap table (or colours), ignored value and class names, checked against the
    values found: a value found that they neither map nor ignore is refused, as remap would."""
    table, colors = given.get("table") or {}, given.get("colors") or []
    ignore, ignore_index = given.get("ignore_value"), given.get("ignore_index", 255)
    mapping: dict[Any, int]
    if colors:
        mapping = {tuple(c["color"]): c["class"] for c in colors}
        found = [
            tuple(v["value"]) if isinstance(v["value"], list) else v["value"] for v in fp["values"]
        ]
    else:
        mapping = {int(k): int(v) for k, v in table.items()}
        found = [v["value"] for v in fp["values"]]
    missing = [k for k in found if k not in mapping and k != ignore]
    if missing:
        shown = [list(k) if isinstance(k, tuple) else k for k in missing]
        raise PlanError(
            f"the masks hold {'colours' if colors else 'values'} {shown} that the given "
            f"remap {'colors' if colors else 'table'} neither maps nor ignores"
        )
    ids = sorted({c for c in mapping.values() if c != ignore_index})
    names = given.get("classes") or [f"class_{i}" for i in range(max(ids) + 1)]
    keys = [
        [list(k) if isinstance(k, tuple) else k for k, c in mapping.items() if c == i]
        for i in range(len(names))
    ]
    why = {key: "given" for key in ("classes", "remap.table", "remap.colors", "remap.ignore_value")}
    table = {} if colors else {int(k): c for k, c in mapping.items()}
    return Labels(table, list(colors), None if colors else ignore, list(names), keys, why)


@dataclass(frozen=True)
class ClassFigures:
    """A planned class and its figures: pixel share, image share, the width of its thinnest
    structures (5th percentile of its pixels; None where not measured)."""

    name: str
    share: float
    image_share: float
    width_p5: float | None


def class_figures(fp: Fingerprint, plan: Labels) -> list[ClassFigures]:
    """Per class (in id order): its values' pixels over every trained pixel, the largest image
    share of its values, the thinnest of its values' structure widths."""
    rows = [[r for k in keys if (r := _values_row(fp, k))] for keys in plan.keys]
    total = sum(r["pixels"] for row in rows for r in row) or 1
    out = []
    for name, row in zip(plan.classes, rows, strict=True):
        widths = [
            r["structures"]["width"]["p5"]
            for r in row
            if r["structures"] and r["structures"]["width"]
        ]
        out.append(
            ClassFigures(
                name,
                sum(r["pixels"] for r in row) / total,
                max((r["image_share"] for r in row), default=0.0),
                min(widths) if widths else None,
            )
        )
    return out


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """The input geometry: squash to image_size, or keep the aspect at image_scale and train on
    image_size crops (predicted with sliding windows)."""

    resize: str
    image_size: int
    image_scale: float
    why: dict[str, str]

    def shrunk(self) -> Geometry | None:
        """The next smaller input when a batch of 2 does not fit (nnU-Net's answer): one stride
        less; None below the smallest size."""
        if self.image_size - STRIDE < MIN_SIZE:
            return None
        size = self.image_size - STRIDE
        why = {**self.why, "train.image_size": f"{self.image_size} did not fit a batch of 2"}
        return Geometry(self.resize, size, self.image_scale, why)

    @property
    def model_input(self) -> ModelInput:
        """The geometry as the model trained with it will read it."""
        train = {"resize": self.resize, "image_size": self.image_size}
        return ModelInput.from_train({**train, "image_scale": self.image_scale})


def _spread(quantiles: dict[str, float]) -> float:
    return quantiles["p90"] / quantiles["p10"] if quantiles["p10"] else math.inf


def thinnest(classes: list[ClassFigures]) -> ClassFigures | None:
    """The class whose thinnest structures are the thinnest (None when none was measured)."""
    measured = [c for c in classes if c.width_p5 is not None]
    return min(measured, key=lambda c: c.width_p5 or 0) if measured else None


def keep_scale(classes: list[ClassFigures]) -> tuple[float, str]:
    """The smallest scale that keeps the thinnest structures :data:`MIN_WIDTH` pixels wide (at
    most 1: images are not enlarged for it), and the figure."""
    thin = thinnest(classes)
    if thin is None or not thin.width_p5:
        return 0.0, "no structures measured"
    scale = min(1.0, MIN_WIDTH / thin.width_p5)
    return scale, f"'{thin.name}' 5th-percentile width {figure(thin.width_p5)} px"


def squashable(fp: Fingerprint) -> tuple[bool, str]:
    """Whether every image may be squashed to one square: near-square and alike in shape and
    size; and the figure."""
    images = fp["images"]
    aspect = images["aspect"]
    spread = max(_spread(images["width"]), _spread(images["height"]))
    width, height = median_size(fp)
    text = f"median {width}x{height}, aspect {aspect['p10']:.2f}..{aspect['p90']:.2f} (p10..p90)"
    low, high = SQUARE_ASPECT
    square = low <= aspect["median"] <= high and _spread(aspect) <= MAX_ASPECT_SPREAD
    return square and spread <= MAX_SIZE_SPREAD, text


def geometry(fp: Fingerprint, classes: list[ClassFigures], target: Target) -> Geometry:
    """Squash near-square images of one shape to the largest stride multiple within
    target.max_size when that keeps the thinnest structures MIN_WIDTH wide; otherwise keep the
    aspect at the scale that does (or that fits max_size, if larger; at most the scale at which
    the whole image is WHOLE_SIDE times max_size) and train on crops."""
    width, height = median_size(fp)
    side = max(width, height)
    needed, thin = keep_scale(classes)
    fits = min(1.0, target.max_size / side)
    square, shape = squashable(fp)
    if square and fits >= needed:
        size = round_to_stride(side * fits, high=target.max_size)
        scale = size / side
        return Geometry(
            SQUASH,
            size,
            1.0,
            {
                "train.resize": f"{shape}: near-square and alike",
                "train.image_size": f"{shape}; {thin} -> {figure(round(_thin_at(classes, scale), 1))} px at {size}",
            },
        )
    scale = min(1.0, math.ceil(max(needed, fits) * 100) / 100)
    whole = math.floor(WHOLE_SIDE * target.max_size / side * 100) / 100
    kept = f"(keeps {MIN_WIDTH} px or more)"
    if scale > whole:  # validation and prediction see whole images: bounded
        scale = whole
        kept = f"(whole images at most {WHOLE_SIDE}x --max-size {target.max_size}: thinner than {MIN_WIDTH} px)"
    size = round_to_stride(side * scale, high=target.max_size)
    reason = (
        "not near-square or not alike"
        if not square
        else f"squashing to {target.max_size} would thin {thin}"
    )
    thinned = figure(round(_thin_at(classes, scale), 1))
    return Geometry(
        KEEP_ASPECT,
        size,
        scale,
        {
            "train.resize": f"{shape}: {reason}",
            "train.image_scale": f"{thin} -> {thinned} px at {scale:g} {kept}",
            "train.image_size": f"crops of the {round(width * scale)}x{round(height * scale)} median scaled image, at most {target.max_size}",
        },
    )


def _thin_at(classes: list[ClassFigures], scale: float) -> float:
    thin = thinnest(classes)
    return (thin.width_p5 or 0) * scale if thin else 0.0


def network(image_size: int, train_pairs: int) -> dict[str, Choice]:
    """A UNet whose encoder is as deep as keeps a BOTTLENECK-pixel feature map at image_size
    (nnU-Net's topology rule); ResNet-34 from LARGE_DATASET training pairs, ResNet-18 below."""
    depth = max(3, min(5, int(math.log2(image_size / BOTTLENECK))))
    encoder = "resnet34" if train_pairs >= LARGE_DATASET else "resnet18"
    size_why = f"{image_size} px input -> {image_size // 2**depth} px at depth {depth}"
    return {
        "train.arch": Choice("Unet", "a UNet: the pipeline's model"),
        "train.encoder": Choice(
            encoder,
            f"{train_pairs} training pairs ({'at least' if encoder == 'resnet34' else 'fewer than'} {LARGE_DATASET})",
        ),
        "train.encoder_weights": Choice(None, "trained from scratch (offline)"),
        "train.encoder_depth": Choice(depth, size_why),
        "train.decoder_channels": Choice(
            None if depth == 5 else DECODER[-depth:],
            "smp's default" if depth == 5 else f"one per encoder stage ({depth})",
        ),
        "train.lr": Choice(LR, "AdamW from scratch"),
    }


# ----------------------------------------------------------------------------- batch and time


def batch_cap(train_pairs: int, target: Target) -> int:
    """The largest batch tried: BATCH_SHARE of the training pairs, within [MIN_BATCH,
    target.max_batch]."""
    return max(MIN_BATCH, min(target.max_batch, int(BATCH_SHARE * train_pairs)))


def probe_batches(cap: int) -> list[int]:
    """The batch sizes the probe tries in turn: powers of two from MIN_BATCH, and the cap."""
    sizes, size = [], MIN_BATCH
    while size < cap:
        sizes.append(size)
        size *= 2
    return sizes + [cap]


def fits(trial: dict, target: Target) -> bool:
    """Whether a probe trial was measured within the memory budget."""
    if not trial.get("measured") or trial.get("oom") or trial.get("peak_mb") is None:
        return False
    return trial["peak_mb"] <= target.memory_mb


def _over(trial: dict) -> str:
    if trial.get("oom"):
        return f"{trial['batch']} ran out of memory"
    if not trial.get("measured"):
        return f"{trial['batch']} predicted {trial['predicted_mb']:.0f} MB"
    return f"{trial['batch']} measured {trial['peak_mb']:.0f} MB"


def batch_size(trials: list[dict], target: Target, cap: int) -> Choice | None:
    """The largest batch (at most ``cap``, at least MIN_BATCH) the probe measured within the
    memory budget; None when a batch of MIN_BATCH does not fit (the input is shrunk then)."""
    fitting = [t for t in trials if fits(t, target) and MIN_BATCH <= t["batch"] <= cap]
    if not fitting:
        return None
    best = max(fitting, key=lambda t: t["batch"])
    beyond = next((t for t in trials if t["batch"] > best["batch"]), None)
    limit = f"cap {cap}" if beyond is None else _over(beyond)
    return Choice(
        best["batch"],
        f"measured {best['peak_mb']:.0f} MB, {best['step_s']:.2f} s a step on {target.device} "
        f"(budget {target.memory_mb} MB; {limit})",
    )


def steps_per_epoch(train_pairs: int, batch: int) -> int:
    """As training runs them (segpipe.training.train.train_batches): the incomplete last batch
    dropped when there is more than one."""
    return train_pairs // batch if train_pairs > batch else 1


def epoch_seconds(
    train_pairs: int, val_pairs: int, batch: int, step_s: float, val_pixels: float
) -> float:
    """An epoch's estimated time: its steps at the probe's step time, and the validation
    images' forward passes (FORWARD_SHARE of a step per batch's worth of pixels)."""
    return (
        steps_per_epoch(train_pairs, batch) * step_s
        + val_pairs * val_pixels / batch * step_s * FORWARD_SHARE
    )


def epochs(
    train_pairs: int, batch: int, epoch_s: float, models: int, hours: float | None
) -> Choice:
    """STEP_BUDGET optimizer steps in epochs, within EPOCH_BOUNDS; with a wall-clock budget, no
    more epochs than fit in it (models trained one after another), at least 1."""
    per_epoch = steps_per_epoch(train_pairs, batch)
    low, high = EPOCH_BOUNDS
    count = max(low, min(high, math.ceil(STEP_BUDGET / per_epoch)))
    why = f"{STEP_BUDGET} steps / {per_epoch} a epoch, within {low}..{high}"
    if hours is not None:
        fit = max(1, int(hours * 3600 / (epoch_s * models)))
        if fit < count:
            count, why = fit, f"what fits in --hours {figure(hours)} ({models} model(s))"
    minutes = count * epoch_s * models / 60
    return Choice(count, f"{why}; about {_duration(minutes)} in all ({epoch_s:.0f} s an epoch)")


def _duration(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


# ----------------------------------------------------------------------------- loss and data


def loss(classes: list[ClassFigures]) -> dict[str, Choice]:
    """Cross-entropy + Dice for every dataset (nnU-Net's loss); the cross-entropy weighted
    (damped median-frequency) when the class shares differ more than WEIGHT_RATIO-fold."""
    rarest = min(classes, key=lambda c: c.share)
    commonest = max(classes, key=lambda c: c.share)
    shares = f"'{rarest.name}' {pct(rarest.share)} of the pixels"
    chosen = {
        "train.loss": Choice(
            "ce+dice", f"Dice weighs every class alike, whatever its share ({shares})"
        )
    }
    ratio = commonest.share / max(rarest.share, 1e-9)
    if ratio <= WEIGHT_RATIO:
        chosen["train.class_weights"] = Choice(None, f"shares within {ratio:.0f}x")
        return chosen
    median = sorted(c.share for c in classes)[len(classes) // 2]
    low, high = WEIGHT_BOUNDS
    weights = [
        round(min(high, max(low, math.sqrt(median / max(c.share, 1e-9)))), 2) for c in classes
    ]
    chosen["train.class_weights"] = Choice(
        weights,
        f"'{commonest.name}' {pct(commonest.share)} vs {shares} ({ratio:.0f}x): sqrt(median share / share), in {low}..{high}",
    )
    return chosen


def foreground(classes: list[ClassFigures]) -> Choice:
    """evaluate.foreground_classes: with 2 or 3 classes, every class but a background (the
    largest, in most images); none otherwise."""
    if len(classes) > 3:
        return Choice(None, f"{len(classes)} classes: no one background")
    big = max(classes, key=lambda c: c.share)
    share, images = BACKGROUND
    if big.share < share or big.image_share < images:
        return Choice(None, f"no class is a background ('{big.name}' {pct(big.share)})")
    ids = [i for i, c in enumerate(classes) if c is not big]
    return Choice(
        ids,
        f"'{big.name}' is the background ({pct(big.share)} of the pixels, in {pct(big.image_share)} of the images)",
    )


def augmentation(target: Target) -> Choice:
    """Horizontal flips always; vertical flips and rotations only when the images have no
    canonical orientation (``segpipe plan --any-orientation``)."""
    augment = {"hflip": 0.5, "vflip": 0.0, "rotate": 0.0, "translate": 0.0, "scale": 0.0}
    augment.update(shear=0.0, color_jitter=0.0)
    if target.any_orientation:
        augment.update(vflip=0.5, rotate=90.0)
        return Choice(augment, "flips and rotations: no canonical orientation (--any-orientation)")
    return Choice(augment, "horizontal flips: images have an up (--any-orientation adds the rest)")


def usable_total(fp: Fingerprint) -> int:
    """The usable pairs of the whole dataset: those read, or for a sample, the pairs found at the
    sample's usable share."""
    pairs = fp["pairs"]
    if not pairs["read"] or pairs["read"] == pairs["found"]:
        return pairs["usable"]
    return round(pairs["found"] * pairs["usable"] / pairs["read"])


def split(fp: Fingerprint, target: Target) -> dict[str, Choice]:
    """The official lists when found; else test carved (TEST_IMAGES wanted, within
    TEST_FRACTION). A train/val pool under FOLDS_BELOW pairs is cross-validated in FOLDS folds
    (fewer for a tiny pool: each fold trains on 2 distinct images at least; not with a search,
    which scores one model per candidate); else validation is carved (VAL_IMAGES wanted,
    within VAL_FRACTION)."""
    usable = usable_total(fp)
    lists = fp["split_lists"]
    official = lists.get("test", 0) > 0
    low, high = TEST_FRACTION
    test_fraction = min(high, max(low, round(TEST_IMAGES / usable, 2)))
    test = lists["test"] if official else round(test_fraction * usable)
    pool = usable - test
    if pool < MIN_PAIRS - 1:
        raise PlanError(
            f"the official test list holds {test} of {usable} usable pairs: {max(pool, 0)} left "
            f"to train and validate (at least {MIN_PAIRS - 1}); split.use_official: false carves "
            "the test split instead"
        )
    chosen = {
        "split.use_official": Choice(
            True, f"official lists: {lists}" if lists else "no split lists found"
        ),
        "split.test_fraction": Choice(
            test_fraction,
            "unused: the official test list" if official else f"{test} of {usable} pairs to test",
        ),
    }
    copies = sum(len(group) - 1 for group in fp["duplicates"])  # a fold takes copies together
    folds = min(FOLDS, (pool - copies) // 2)
    if pool < FOLDS_BELOW and not target.search and folds >= 2:
        chosen["split.folds"] = Choice(
            folds, f"{pool} pairs to train and validate (fewer than {FOLDS_BELOW})"
        )
        chosen["split.val_fraction"] = Choice(0.2, "unused with folds")
        chosen["predict.ensemble"] = Choice(
            "folds", "the fold models predict the test split together"
        )
        return chosen
    low, high = VAL_FRACTION
    val_fraction = min(high, max(low, round(VAL_IMAGES / max(pool, 1), 2)))
    chosen["split.folds"] = Choice(
        None,
        f"{pool} pairs to train and validate"
        + (
            " (a search scores one model per candidate)"
            if target.search and pool < FOLDS_BELOW
            else ""
        ),
    )
    chosen["split.val_fraction"] = Choice(
        val_fraction, f"{round(val_fraction * pool)} of {pool} pairs to validate"
    )
    chosen["predict.ensemble"] = Choice(None, "one model")
    return chosen


def split_sizes(fp: Fingerprint, chosen: dict[str, Choice]) -> tuple[int, int]:
    """(train, val) pairs of one model under the planned split, as split.py carves them."""
    usable, lists = usable_total(fp), fp["split_lists"]
    test = (
        lists["test"]
        if lists.get("test", 0) > 0
        else round(chosen["split.test_fraction"].value * usable)
    )
    pool = usable - test
    folds = chosen["split.folds"].value
    val = (
        math.ceil(pool / folds)
        if folds
        else max(1, round(chosen["split.val_fraction"].value * pool))
    )
    return pool - val, val


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Measured:
    """What the probe measured at the planned batch: the process's peak and baseline (after
    imports and the model, before a step) in MB, and a step's seconds."""

    peak_mb: float
    baseline_mb: float
    step_s: float


def _mb(value: float) -> int:
    """Megabytes rounded up to a multiple of 500."""
    return int(500 * math.ceil(value / 500))


def _minutes(value: float) -> int:
    return int(max(5, math.ceil(value)))


def resources(
    fp: Fingerprint,
    measured: Measured,
    *,
    target: Target,
    arrays_mb: float,
    train_minutes: float,
    predict_minutes: float,
) -> dict[str, Choice]:
    """Slurm (and local) resources from the probe: one GPU (the probe measured one); the train
    job's memory is its measured peak
    times MEMORY_MARGIN plus its data arrays; prediction, which runs the same model forward
    only, gets the same; runtimes are the estimates times RUNTIME_MARGIN plus 10 minutes.
    remap and preprocess decode a few of the largest images per process."""
    threads = target.threads
    image_mb = fp["images"]["width"]["max"] * fp["images"]["height"]["max"] * 4 * 4 / 1e6
    train_mb = _mb(measured.peak_mb * MEMORY_MARGIN + arrays_mb)
    measured_why = f"peak {measured.peak_mb:.0f} MB x {MEMORY_MARGIN} + arrays {arrays_mb:.0f} MB"
    time_why = f"{_duration(train_minutes)} estimated x {RUNTIME_MARGIN} + 10 min"
    io = {"threads": threads, "mem_mb": _mb(1000 + threads * image_mb), "runtime": 60}
    gpu = "the batch was measured on one GPU"
    if target.device != "cuda":
        gpu = "the Slurm GPU request; training runs on the CPU (train.device)"
    return {
        "train.gpus": Choice(1, gpu),
        "resources.download": Choice(
            {"threads": 1, "mem_mb": 1000, "runtime": 10}, "a folder: nothing to download"
        ),
        "resources.remap": Choice(
            io, f"{threads} processes decoding {figure(round(image_mb, 1))} MB pairs at most"
        ),
        "resources.split": Choice({"threads": 1, "mem_mb": 1000, "runtime": 10}, "tables only"),
        "resources.preprocess": Choice(
            {**io, "mem_mb": _mb(io["mem_mb"] + arrays_mb)},
            f"as remap, and the arrays ({arrays_mb:.0f} MB)",
        ),
        "resources.train": Choice(
            {
                "threads": threads,
                "mem_mb": train_mb,
                "runtime": _minutes(train_minutes * RUNTIME_MARGIN + 10),
            },
            f"{measured_why}; {time_why}",
        ),
        "resources.predict": Choice(
            {
                "threads": threads,
                "mem_mb": train_mb,
                "runtime": _minutes(predict_minutes * RUNTIME_MARGIN + 10),
            },
            f"the train job's memory (forward only); {_duration(predict_minutes)} estimated",
        ),
        "resources.evaluate": Choice(
            {"threads": 1, "mem_mb": 2000, "runtime": 30}, "numpy confusion matrices"
        ),
        "resources.report": Choice(
            {"threads": 1, "mem_mb": 2000, "runtime": 30}, "figures and HTML"
        ),
    }


def search(target: Target, *, lr: float, loss_name: str, encoder: str, epochs: int) -> Choice:
    """With ``--search N``: N draws around the planned learning rate (a third to three times),
    loss and encoder, successive halving at eta 3 (2 below 3 draws) from a ninth of the planned
    epochs to all of them."""
    n = target.search
    if not n:
        return Choice(None, "no search (--search N adds one)")
    if n < 2:
        raise PlanError(f"--search {n}: a search needs at least 2 candidates")
    eta = 3 if n >= 3 else 2
    most = max(epochs, 2)
    other_loss = "ce" if loss_name != "ce" else "ce+dice"
    other_encoder = "resnet34" if encoder != "resnet34" else "resnet18"
    section = {
        "sample": n,
        "seed": 0,
        "eta": eta,
        "min_epochs": max(1, round(most / eta**2)),
        "max_epochs": most,
        "space": {
            "train.lr": {"log_uniform": [round(lr / 3, 6), round(lr * 3, 6)]},
            "train.loss": {"choice": [loss_name, other_loss]},
            "train.encoder": {"choice": [encoder, other_encoder]},
        },
    }
    return Choice(
        section,
        f"{n} draws around the planned lr, loss and encoder; the winner is trained to {most} epochs",
    )


def names(fp: Fingerprint, given: str | None, encoder: str) -> dict[str, Choice]:
    """The dataset's name (given, or its folder's: with the parent's when the folder's name is
    generic, such as train), the run named after it, and the report's title."""
    if given:
        name, why = given, "given"
    else:
        parts = [
            p for p in str(fp["dataset"]["root"]).replace("\\", "/").split("/") if p and p != "."
        ]
        leaf = parts[-1] if parts else "dataset"
        if leaf.lower() in GENERIC_NAMES and len(parts) > 1:
            leaf = f"{parts[-2]}-{leaf}"
        name, why = leaf, "the dataset folder's name"
    return {
        "dataset.name": Choice(name, why),
        "run_name": Choice(slug(name), "the dataset's name"),
        "report.title": Choice(f"{name}, UNet-{encoder} (planned)", "the dataset's name and model"),
    }
