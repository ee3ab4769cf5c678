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

from segpipe.params import ASSESSMENT, DATA_OPTIONS, MODEL, NOTHING, option_class, set_dotted
from segpipe.workflow import paths
from segpipe.workflow.experiments import (
    NAME_MAX,
    RUN_SECTIONS,
    Run,
    _labels,
    _slug,
    flatten,
)

# The kinds of range of search.space, each {kind: [low, high]} or {choice: [values...]}.
RANGES = ("log_uniform", "uniform", "int", "choice")
DEFAULT_ETA = 3
DEFAULT_SEED = 0
# The train options every rung sets itself (rung_train_options): its budget of epochs and the
# schedule planned for the whole search. A candidate's own value would be ignored.
SET_BY_SEARCH = ("train.epochs", "train.schedule_epochs")
# Why a space over an option of another class than "model" compares nothing.
_NOT_TRAINING = {
    ASSESSMENT: "only changes how the model is assessed or shown",
    NOTHING: "changes nothing a job writes",
}


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


def _class_problem(option: str) -> str | None:
    """Why a search cannot compare candidates that differ in ``option``: it changes what the
    data is, declares runs, is set by every rung, or does not train the model; None if it can."""
    section = option.split(".")[0]
    if section in DATA_OPTIONS:
        return f"changes what the data is; candidates share {', '.join(DATA_OPTIONS)}"
    if section in RUN_SECTIONS:
        return "is not an option of a run"
    if option in SET_BY_SEARCH:
        return (
            "is set by the search itself (each rung trains to its budget of epochs on a "
            "schedule planned for search.max_epochs); a candidate's value would be ignored"
        )
    try:
        kind = option_class(option)
    except KeyError:
        return None  # no such option: each candidate's config names it
    if kind == MODEL:
        return None
    return (
        f"{_NOT_TRAINING[kind]}, not what is trained: every candidate would train the same "
        "model; a search compares trainings: search options that train the model"
    )


def _space_problems(space: Mapping[str, Mapping[str, list]]) -> list[str]:
    """Options of the space a search cannot compare candidates by (:func:`_class_problem`);
    what their ranges can draw is checked with the config (segpipe.workflow.config)."""
    return [
        f"config option 'search.space.{option}': {why}"
        for option in space
        if (why := _class_problem(option))
    ]


def _nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"train.lr": 0.1} -> {"train": {"lr": 0.1}}."""
    nested: dict[str, Any] = {}
    for option, value in dotted.items():
        set_dotted(nested, option, value)
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


def candidate_problems(search: Search | None, runs: Sequence[Run]) -> list[str]:
    """Why the candidates (the runs) cannot be searched: a cross-validated candidate
    (split.folds; a rung scores one model per candidate), a candidate's override of an option
    every rung sets (SET_BY_SEARCH), and two candidates that train the same model (they differ
    only in options that do not train it: segpipe.params.OPTION_CLASSES)."""
    if search is None:
        return []
    folds = [run.name for run in runs if run.config["split"]["folds"]]
    if folds:
        return [
            f"config option 'split.folds': a search scores one model per candidate; candidate "
            f"'{folds[0]}' is cross-validated (drop split.folds from the search's runs)"
        ]
    for run in runs:
        for option in run.overrides:
            if option in SET_BY_SEARCH:
                return [f"run '{run.name}': option '{option}' {_class_problem(option)}"]
    return _same_models(search, runs)


def _same_models(search: Search, runs: Sequence[Run]) -> list[str]:
    """The first two candidates that train one model, naming the options they differ in."""
    for run in runs:
        if run.shares is None:
            continue
        first = next(r for r in runs if r.name == run.shares)
        ours, theirs = flatten(run.config), flatten(first.config)
        differ = sorted(o for o in ours.keys() | theirs.keys() if ours.get(o) != theirs.get(o))
        differ = [o for o in differ if o != "run_name"]
        if not differ and search.sample is not None:
            return [
                f"config option 'search.sample': draws '{first.name}' and '{run.name}' drew the "
                "same values (the space holds fewer different candidates than the draws); draw "
                "fewer or widen the space"
            ]
        why = (
            f"differ only in {', '.join(differ)}, which does not train it"
            if differ
            else ("are the same run")
        )
        return [
            f"runs '{first.name}' and '{run.name}': candidates that train the same model (they "
            f"{why}); a search compares trainings: search options that train the model"
        ]
    return []


def rung_train_options(train: Mapping[str, Any], search: Search, rung: int) -> dict[str, Any]:
    """A candidate's train options in a rung: its run's, with the options the search sets
    (SET_BY_SEARCH): epochs, the rung's budget; schedule_epochs, the whole search's."""
    budgets = rung_budgets(search.min_epochs, search.max_epochs, search.eta)
    return {
        **train,
        "epochs": budgets[rung],
        "schedule_epochs": schedule_epochs(search, train["scheduler"]),
    }


def schedule_epochs(search: Search, scheduler: str) -> int | None:
    """The epochs a candidate's learning-rate schedule is planned for: the search's
    max_epochs, so a promoted candidate continues as if it never stopped; None for a constant
    rate, which no length changes (then raising max_epochs retrains no rung that exists)."""
    return None if scheduler == "constant" else search.max_epochs


# What rule search_train writes of a candidate's rung (segpipe.workflow.paths.rung_file), by the
# names of rule train's outputs: search_winner publishes the winner's last rung as them.
RUNG_OUTPUTS = {
    "best": "best.pt",
    "last": "last.pt",
    "history": "history.csv",
    "model": "model.json",
}


def previous_rung(run: str, rung: int) -> list[str]:
    """The checkpoints a candidate's rung starts from: its previous rung's; none in rung 0."""
    if rung == 0:
        return []
    return [paths.rung_file(name, run, rung - 1) for name in ("last.pt", "best.pt")]


def rung_outputs(run: str, rung: int) -> dict[str, str]:
    """A candidate's rung as rule search_train writes it (:data:`RUNG_OUTPUTS`)."""
    return {key: paths.rung_file(name, run, rung) for key, name in RUNG_OUTPUTS.items()}


def last_rung_files(budgets: Sequence[int], brackets: Sequence[Sequence[int]]) -> list[str]:
    """Each bracket's decision file of the last rung, in bracket order (rule search_select)."""
    last = len(budgets) - 1
    return [paths.RUNG_FILE.format(bracket=b, rung=last) for b in range(len(brackets))]
