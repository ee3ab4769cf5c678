"""Successive-halving search: the ``search`` section of a config (config/schema.yaml).

A search trains its candidates rung by rung. The candidates are the runs of ``experiments`` and
``grid`` (in declared order), or ``search.sample`` seeded draws from the ranges of
``search.space``. Rung ``r`` trains every candidate still in the race up to ``rung_budgets()[r]``
epochs in all (budgets are cumulative), then the top ``ceil(n / eta)`` by validation mIoU go on
to the next rung (:func:`segpipe.evaluation.rungs.promote`).

Everything here is pure: it reads validated configs and returns values or problems, one line
each, naming the option.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from segpipe.workflow.experiments import (
    DATA_OPTIONS,
    NAME_MAX,
    RUN_SECTIONS,
    _labels,
    _slug,
)

# The kinds of range of search.space, each {kind: [low, high]} or {choice: [values...]}.
RANGES = ("log_uniform", "uniform", "int", "choice")
DEFAULT_ETA = 3
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Search:
    """A config's ``search`` section: the budget (min_epochs, max_epochs, eta), with
    ``sample`` the seeded draws from ``space`` (dotted option -> {kind: bounds or values}), and
    the number of Hyperband ``brackets`` (segpipe.workflow.brackets; 1: plain successive
    halving)."""

    min_epochs: int
    max_epochs: int
    eta: int = DEFAULT_ETA
    sample: int | None = None
    seed: int = DEFAULT_SEED
    space: Mapping[str, Mapping[str, list]] = field(default_factory=dict)
    brackets: int = 1


def parse_search(section: Mapping[str, Any] | None) -> Search | None:
    """The ``search`` section of a validated config as a :class:`Search`; None without one."""
    if section is None:
        return None
    return Search(
        min_epochs=section["min_epochs"],
        max_epochs=section["max_epochs"],
        eta=section.get("eta", DEFAULT_ETA),
        sample=section.get("sample"),
        seed=section.get("seed", DEFAULT_SEED),
        space=dict(section.get("space") or {}),
        brackets=section.get("brackets", 1),
    )


def rung_count(min_epochs: int, max_epochs: int, eta: int) -> int:
    """1 + the whole number of eta-fold steps nearest to max_epochs / min_epochs (half up):
    4 -> 36 at eta 3 is 3 rungs, 4 -> 30 also 3 (7.5 is nearer 9 than 3), 4 -> 6 one (1.5 is
    nearer 1 than 3). Exact in integers: k steps when max^2 >= min^2 * eta^(2k-1)."""
    if eta < 2 or min_epochs < 1 or max_epochs <= min_epochs:
        return 1
    steps = 0
    while max_epochs**2 >= min_epochs**2 * eta ** (2 * steps + 1):
        steps += 1
    return steps + 1


def rung_budgets(min_epochs: int, max_epochs: int, eta: int) -> list[int]:
    """The epochs each rung has trained in all (cumulative): min_epochs * eta^r for each rung
    but the last, which trains to max_epochs: (4, 36, 3) -> [4, 12, 36]. When max_epochs is no
    power of eta times min_epochs, the last rung is stretched or shortened to it:
    (4, 30, 3) -> [4, 12, 30], (4, 13, 3) -> [4, 13]. Always increasing (see rung_count)."""
    rungs = rung_count(min_epochs, max_epochs, eta)
    if rungs == 1:
        return [max(min_epochs, max_epochs)]
    return [min_epochs * eta**r for r in range(rungs - 1)] + [max_epochs]


def rung_sizes(n: int, eta: int, rungs: int) -> list[int]:
    """How many candidates each rung trains: n, then ceil of the previous over eta
    (27 at eta 3 over 3 rungs: [27, 9, 3])."""
    sizes = [n]
    for _ in range(rungs - 1):
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes


def _uniform(option: str, index: int, seed: int) -> float:
    """A number in [0, 1) that depends only on the seed, the draw and the option, so that a
    draw keeps its values when draws or options are added."""
    return random.Random(f"{seed}/{index}/{option}").random()


def draw(spec: Mapping[str, list], u: float) -> Any:
    """The value of a range at u in [0, 1): log_uniform and uniform within [low, high],
    int in low..high inclusive, choice one of its values."""
    kind, bounds = next(iter(spec.items()))
    if kind == "choice":
        return bounds[min(int(u * len(bounds)), len(bounds) - 1)]
    low, high = bounds
    if kind == "int":
        low, high = int(low), int(high)
        return min(low + int(u * (high - low + 1)), high)
    if kind == "log_uniform":
        value = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        value = low + u * (high - low)
    return min(max(float(value), low), high)


def _name_part(value: Any) -> str:
    """A drawn value in a name: numbers to 3 significant digits (0.000323), others as grid
    names write them."""
    if isinstance(value, float):
        return _slug(f"{value:.3g}")
    return _slug(value)


def sample_candidates(
    space: Mapping[str, Mapping[str, list]], n: int, seed: int
) -> dict[str, dict[str, Any]]:
    """n seeded draws from ``space``: name -> {dotted option: value}, in draw order.

    Draw i is named ``s<i>`` (two digits at least) followed by each option's label and value
    (options in alphabetical order, values to 3 significant digits in the name only):
    ``s00_encoder-resnet18_lr-0.00032``, cut to NAME_MAX characters. The same space and seed
    give the same names and values whatever the order of the options, and n + 1 draws begin
    with the n draws.
    """
    options = sorted(space)
    labels = _labels(options)
    candidates = {}
    for index in range(n):
        values = {o: draw(space[o], _uniform(o, index, seed)) for o in options}
        parts = [f"s{index:02d}"] + [
            f"{label}-{_name_part(values[o])}" for label, o in zip(labels, options, strict=True)
        ]
        name = "_".join(parts)[:NAME_MAX].rstrip("._+-")
        candidates[name] = values
    return candidates


def search_candidates(cfg: Mapping[str, Any], runs: Sequence[str]) -> list[str] | None:
    """The candidate names of a validated config with a search: its sampled draws, else its
    declared runs ``runs``; None when the space cannot be sampled (search_problems says why)."""
    search = parse_search(cfg["search"])
    if search is None or search.sample is None:
        return list(runs)
    if _space_problems(search.space):
        return None
    return list(sample_candidates(search.space, search.sample, search.seed))


def search_problems(cfg: Mapping[str, Any], candidates: Sequence[str] | None) -> list[str]:
    """Why a validated config's search cannot run, one line per problem naming the option:
    eta below 2, min_epochs not below max_epochs, budgets of a single rung, fewer candidates
    than eta (``candidates`` None: not checked), sample beside experiments or grid, and in the
    space: a data option or a section that declares runs, low above high, a log-uniform bound
    not above 0."""
    search = parse_search(cfg["search"])
    if search is None:
        return []
    problems = _budget_problems(search) + _space_problems(search.space)
    if (search.sample is None) != (not search.space):
        problems.append(_unpaired(search))
    elif search.sample is not None and (cfg.get("experiments") or cfg.get("grid")):
        problems.append(
            "config option 'search.sample': draws the candidates from search.space; drop "
            "experiments and grid, or drop sample and space to search over them"
        )
    elif candidates is not None and len(candidates) < search.eta:
        problems.append(_too_few(search, len(candidates)))
    return problems


def _budget_problems(search: Search) -> list[str]:
    eta, low, high = search.eta, search.min_epochs, search.max_epochs
    if eta < 2:
        return [
            f"config option 'search.eta': {eta} is below 2 (each rung keeps 1/eta of the "
            "candidates)"
        ]
    if low >= high:
        return [
            "config options 'search.min_epochs' and 'search.max_epochs': min_epochs "
            f"{low} is not below max_epochs {high}"
        ]
    if rung_count(low, high, eta) < 2:
        least = math.isqrt(low * low * eta - 1) + 1  # the least m with m^2 >= low^2 * eta
        return [
            f"config option 'search.max_epochs': {low} -> {high} epochs at eta {eta} is a "
            f"single rung ({high}/{low} is nearer 1 than {eta}); use max_epochs {least} or more"
        ]
    return []


def _unpaired(search: Search) -> str:
    if search.sample is None:
        return (
            "config option 'search.space': its ranges are drawn by search.sample, which is not "
            "given; set sample to the number of candidates"
        )
    return (
        "config option 'search.sample': draws from the ranges of search.space, which is not "
        "given; declare space"
    )


def _too_few(search: Search, n: int) -> str:
    if search.sample is not None:
        where, what = "search.sample", f"{n} draws"
    elif n == 1:
        where, what = "search.eta", "1 candidate (declare experiments, a grid or search.sample)"
    else:
        where, what = "search.eta", f"{n} candidates (the runs of experiments and grid)"
    return (
        f"config option '{where}': {what}, fewer than eta {search.eta} (the first rung would "
        "promote them all); declare more candidates or lower eta"
    )


def _space_problems(space: Mapping[str, Mapping[str, list]]) -> list[str]:
    problems = []
    for option, spec in space.items():
        where = f"config option 'search.space.{option}'"
        section = option.split(".")[0]
        if section in DATA_OPTIONS:
            problems.append(
                f"{where}: changes what the data is; candidates share {', '.join(DATA_OPTIONS)}"
            )
        elif section in RUN_SECTIONS:
            problems.append(f"{where}: is not an option of a run")
        kind, bounds = next(iter(spec.items()))
        if kind == "choice":
            continue
        low, high = bounds
        if low > high:
            problems.append(f"{where}: {kind} low {low} is above high {high}")
        if kind == "log_uniform" and min(low, high) <= 0:
            problems.append(
                f"{where}: log_uniform bounds must be above 0, got [{low}, {high}] "
                "(use uniform for a range that holds 0)"
            )
    return problems


def _nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"train.lr": 0.1} -> {"train": {"lr": 0.1}}."""
    nested: dict[str, Any] = {}
    for option, value in dotted.items():
        *sections, key = option.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return nested


def sampled_experiments(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """A validated config's search.sample draws as named runs (``experiments``: name ->
    nested override); None without draws, or when the space cannot be drawn from (then
    :func:`search_problems` says why)."""
    search = parse_search(cfg["search"])
    if search is None or search.sample is None or _space_problems(search.space):
        return None
    draws = sample_candidates(search.space, search.sample, search.seed)
    return {name: _nested(values) for name, values in draws.items()}


def candidate_problems(search: Search | None, runs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why the candidates (run name -> validated config) cannot be searched: a
    cross-validated candidate (split.folds; a rung scores one model per candidate)."""
    if search is None:
        return []
    folds = [name for name, cfg in runs.items() if cfg["split"]["folds"]]
    if not folds:
        return []
    return [
        f"config option 'split.folds': a search scores one model per candidate; candidate "
        f"'{folds[0]}' is cross-validated (drop split.folds from the search's runs)"
    ]


def schedule_epochs(search: Search, scheduler: str) -> int | None:
    """The epochs a candidate's learning-rate schedule is planned for: the search's
    max_epochs, so a promoted candidate continues as if it never stopped; None for a constant
    rate, which no length changes (then raising max_epochs retrains no rung that exists)."""
    return None if scheduler == "constant" else search.max_epochs
