"""The search section: its budgets, promotion, seeded candidates and bad input."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.workflow.config import ConfigError, load_schema, validate_config
from segpipe.workflow.experiments import NAME_MAX, expand_runs
from segpipe.workflow.search import (
    Search,
    parse_search,
    rung_budgets,
    rung_sizes,
    sample_candidates,
    search_candidates,
    search_problems,
)

from helpers.repo import REPO, copy_workflow, snakemake

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # run_name's pattern
SPACE = {
    "train.lr": {"log_uniform": [1e-4, 1e-2]},
    "train.encoder": {"choice": ["resnet18", "mobilenet_v2"]},
    "train.batch_size": {"int": [2, 8]},
    "train.weight_decay": {"uniform": [0.0, 0.1]},
}


def validate(cfg: dict) -> dict:
    return validate_config(cfg, SCHEMA, check_models=False)


def problems_of(search: dict | None, **sections) -> list[str]:
    """The search problems of test.yaml with ``search`` and ``sections``, as rules/common.smk
    finds them: after validation, with the runs the config declares."""
    raw = {**TINY, "search": search, **sections}
    cfg = validate(raw)
    runs = [run.name for run in expand_runs(raw, cfg, validate)]
    return search_problems(cfg, search_candidates(cfg, runs))


# --- budgets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "eta", "budgets"),
    [
        (4, 36, 3, [4, 12, 36]),
        (4, 30, 3, [4, 12, 30]),  # 7.5 is nearer 9 than 3: the last rung is shortened
        (4, 13, 3, [4, 13]),  # 3.25 is nearer 3 than 9: the last rung is stretched
        (1, 81, 3, [1, 3, 9, 27, 81]),
        (5, 20, 2, [5, 10, 20]),
        (4, 7, 3, [4, 7]),  # 7^2 = 49 >= 4^2 * 3 = 48
        (4, 6, 3, [6]),  # a single rung (refused by search_problems)
    ],
)
def test_rung_budgets_are_geometric_and_end_at_max_epochs(low, high, eta, budgets) -> None:
    assert rung_budgets(low, high, eta) == budgets


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 50), st.integers(2, 2000), st.integers(2, 6))
def test_rung_budgets_for_any_budget(low: int, high: int, eta: int) -> None:
    budgets = rung_budgets(low, high, eta)
    assert budgets[-1] == max(low, high)
    assert all(a < b for a, b in zip(budgets, budgets[1:], strict=False))  # cumulative
    if len(budgets) > 1:
        assert budgets[:-1] == [low * eta**r for r in range(len(budgets) - 1)]
        # The last step is the eta-fold step nearest to max/min on a log scale.
        ratio = high / budgets[-2]
        assert eta**-0.5 <= ratio / eta < eta**0.5 + 1e-9
    steps = len(budgets) - 1
    assert steps == (round(math.log(high / low, eta) + 1e-12) if high > low else 0) or (
        # exactly half a step: half rounds up (Python's round goes to even)
        high**2 == low**2 * eta ** (2 * steps - 1)
    )


@pytest.mark.parametrize(
    ("n", "eta", "rungs", "sizes"),
    [(27, 3, 3, [27, 9, 3]), (10, 3, 3, [10, 4, 2]), (5, 2, 4, [5, 3, 2, 1]), (3, 3, 1, [3])],
)
def test_rung_sizes_promote_ceil_n_over_eta(n, eta, rungs, sizes) -> None:
    assert rung_sizes(n, eta, rungs) == sizes


def test_the_issues_example_is_27_9_3_candidates_at_4_12_36_epochs() -> None:
    budgets = rung_budgets(4, 36, 3)
    assert budgets == [4, 12, 36]
    assert rung_sizes(27, 3, len(budgets)) == [27, 9, 3]


# --- promotion -----------------------------------------------------------------------------


# --- sampling ------------------------------------------------------------------------------


def test_sampled_names_and_values() -> None:
    candidates = sample_candidates(SPACE, 3, seed=0)
    assert len(candidates) == 3
    for i, (name, values) in enumerate(candidates.items()):
        assert name.startswith(f"s{i:02d}_batch_size-")
        assert set(values) == set(SPACE)
        lr = values["train.lr"]
        assert f"_lr-{lr:.3g}_" in name
        assert f"encoder-{values['train.encoder']}" in name
    assert sample_candidates(SPACE, 3, seed=0) == candidates
    assert sample_candidates(SPACE, 3, seed=1) != candidates
    # The order the options are declared in changes nothing.
    assert sample_candidates(dict(reversed(SPACE.items())), 3, seed=0) == candidates


number = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(1e-8, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def ranges(draw_: st.DrawFn) -> dict:
    kind = draw_(st.sampled_from(["log_uniform", "uniform", "int", "choice"]))
    if kind == "choice":
        values = st.one_of(st.text(max_size=12), st.integers(), number, st.booleans())
        return {"choice": draw_(st.lists(values, min_size=1, max_size=5))}
    bounds = (
        positive if kind == "log_uniform" else st.integers(-50, 50) if kind == "int" else number
    )
    return {kind: sorted(draw_(st.lists(bounds, min_size=2, max_size=2)))}


options = st.from_regex(r"[a-z_]{1,8}(\.[a-z0-9_]{1,12}){1,2}", fullmatch=True)


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(options, ranges(), min_size=1, max_size=6),
    st.integers(1, 20),
    st.integers(0, 2**32),
)
def test_sampling_for_any_space(space: dict, n: int, seed: int) -> None:
    candidates = sample_candidates(space, n, seed)
    assert len(candidates) == n  # unique names
    for name, values in candidates.items():
        assert SAFE.match(name) and len(name) <= NAME_MAX, name
        for option, spec in space.items():
            (kind, bounds), value = next(iter(spec.items())), values[option]
            if kind == "choice":
                assert value in bounds
            elif kind == "int":
                assert isinstance(value, int) and bounds[0] <= value <= bounds[1]
            else:
                assert isinstance(value, float) and bounds[0] <= value <= bounds[1]
                assert kind != "log_uniform" or value > 0
    # More draws keep the first ones.
    more = sample_candidates(space, n + 1, seed)
    assert list(more.items())[:n] == list(candidates.items())


def test_int_ranges_include_both_bounds() -> None:
    values = {
        v["train.seed"] for v in sample_candidates({"train.seed": {"int": [1, 3]}}, 60, 0).values()
    }
    assert values == {1, 2, 3}
    # Whole floats (as YAML may give them) bound an int range too, and draw ints.
    floats = sample_candidates({"train.seed": {"int": [1.0, 3.0]}}, 60, 0).values()
    assert {v["train.seed"] for v in floats} == {1, 2, 3}
    assert all(type(v["train.seed"]) is int for v in floats)


# --- the section and its bad input ---------------------------------------------------------

BUDGET = {"min_epochs": 1, "max_epochs": 9}
GRID = {"train.lr": [0.001, 0.01, 0.1]}


def test_the_section_is_parsed_with_its_defaults() -> None:
    cfg = validate({**TINY, "search": {**BUDGET, "sample": 4, "space": SPACE}})
    search = parse_search(cfg["search"])
    assert search == Search(min_epochs=1, max_epochs=9, eta=3, sample=4, seed=0, space=SPACE)
    assert validate(TINY)["search"] is None and parse_search(None) is None


@pytest.mark.parametrize(
    "search, sections",
    [
        (BUDGET, {"grid": GRID}),
        ({**BUDGET, "eta": 2}, {"experiments": {"a": {}, "b": {}}}),
        ({**BUDGET, "sample": 3, "space": SPACE, "seed": 7}, {}),
        ({"min_epochs": 4, "max_epochs": 30, "sample": 27, "space": SPACE}, {}),
    ],
)
def test_good_searches_pass(search, sections) -> None:
    assert problems_of(search, **sections) == []


BAD = [
    # (search, other sections, option named, words of the message)
    ({**BUDGET, "eta": 1}, {"grid": GRID}, "search.eta", "below 2"),
    ({**BUDGET, "eta": 0}, {"grid": GRID}, "search.eta", "below 2"),
    ({**BUDGET, "eta": -3}, {"grid": GRID}, "search.eta", "below 2"),
    ({"min_epochs": 9, "max_epochs": 9}, {"grid": GRID}, "search.min_epochs", "not below"),
    ({"min_epochs": 10, "max_epochs": 9}, {"grid": GRID}, "search.min_epochs", "not below"),
    ({"min_epochs": 4, "max_epochs": 6}, {"grid": GRID}, "search.max_epochs", "single rung"),
    (
        {"min_epochs": 4, "max_epochs": 5, "eta": 4},
        {"grid": {"train.lr": [0.001, 0.01, 0.1, 1.0]}},
        "search.max_epochs",
        "8 or more",
    ),
    (BUDGET, {"grid": {"train.lr": [0.1, 0.2]}}, "search.eta", "2 candidates"),
    (BUDGET, {}, "search.eta", "1 candidate (declare"),
    ({**BUDGET, "eta": 4}, {"experiments": {"a": {}, "b": {}, "c": {}}}, "search.eta", "fewer"),
    ({**BUDGET, "sample": 2, "space": SPACE}, {}, "search.sample", "2 draws"),
    ({**BUDGET, "sample": 5}, {}, "search.sample", "search.space"),
    ({**BUDGET, "space": SPACE}, {"grid": GRID}, "search.space", "search.sample"),
    ({**BUDGET, "sample": 5, "space": SPACE}, {"grid": GRID}, "search.sample", "grid"),
    *[
        ({**BUDGET, "sample": 5, "space": {option: {"choice": [value]}}}, {}, option, "data")
        for option, value in [
            ("dataset.name", "x"),
            ("classes.0", "x"),
            ("remap.ignore_value", 0),
            ("ignore_index.x", 1),
        ]
    ],
    ({**BUDGET, "sample": 5, "space": {"run_name.x": {"choice": ["a"]}}}, {}, "run_name.x", "run"),
    ({**BUDGET, "sample": 5, "space": {"grid.x": {"choice": [1]}}}, {}, "grid.x", "run"),
    ({**BUDGET, "sample": 5, "space": {"search.eta": {"int": [2, 4]}}}, {}, "search.eta", "run"),
]


@pytest.mark.parametrize(("search", "sections", "option", "words"), BAD)
def test_bad_searches_fail_in_one_line_naming_the_option(search, sections, option, words) -> None:
    problems = problems_of(search, **sections)
    assert len(problems) == 1, problems
    (line,) = problems
    assert "\n" not in line
    assert re.match(
        rf"config options? '([a-z._]+' and ')?(search\.space\.)?{re.escape(option)}'", line
    ), line
    assert words in line


@pytest.mark.parametrize(
    ("search", "option"),
    [
        ({**BUDGET, "eta": 2.5}, "search.eta"),
        ({"min_epochs": 0, "max_epochs": 9}, "search.min_epochs"),
        ({"max_epochs": 9}, "search"),
        ({**BUDGET, "sample": 0, "space": SPACE}, "search.sample"),
        (
            {**BUDGET, "sample": 1001, "space": SPACE},
            "search.sample': 1001 is greater than the maximum of 1000",
        ),
        (
            {**BUDGET, "sample": 3, "space": {"train.lr": {"normal": [0, 1]}}},
            "search.space.train.lr",
        ),
        ({**BUDGET, "sample": 3, "space": {"train.lr": {"uniform": [1]}}}, "search.space.train.lr"),
        ({**BUDGET, "sample": 3, "space": {"train.lr": {"choice": []}}}, "search.space.train.lr"),
        ({**BUDGET, "sample": 3, "space": {"lr": {"choice": [1]}}}, "search.space"),
        (
            {**BUDGET, "sample": 3, "space": {"train.lr": {"uniform": [0, float("nan")]}}},
            "search.space.train.lr",
        ),
        ({**BUDGET, "tries": 3}, "search.tries"),
    ],
)
def test_malformed_sections_fail_validation_naming_the_option(search, option) -> None:
    with pytest.raises(ConfigError) as exc:
        validate({**TINY, "search": search})
    assert f"config option '{option}" in str(exc.value)


def test_a_run_cannot_override_the_search_and_runs_do_not_carry_it() -> None:
    raw = {**TINY, "search": BUDGET, "grid": GRID}
    runs = expand_runs(raw, validate(raw), validate)
    plain = {**TINY, "grid": GRID}
    assert [r.config for r in runs] == [
        r.config for r in expand_runs(plain, validate(plain), validate)
    ]
    assert all("search" not in r.config for r in runs)
    bad = {**TINY, "experiments": {"a": {"search": {"eta": 2}}}}
    with pytest.raises(ConfigError, match="run 'a': option 'search.eta' is not an option of a run"):
        expand_runs(bad, validate(bad), validate)


@pytest.mark.slow
def test_a_bad_search_fails_before_any_job_runs(tmp_path) -> None:
    work = copy_workflow(tmp_path)
    search = "search={min_epochs: 4, max_epochs: 36, eta: 1}"
    proc = snakemake(work, "-n", "--configfile", "config/test.yaml", "--config", search)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config option 'search.eta': 1 is below 2" in out
    assert "Traceback" not in out


def test_the_documented_example_is_what_the_search_draws() -> None:
    """docs/experiments.md's search example names its first draw as sample_candidates does."""
    page = (REPO / "docs" / "experiments.md").read_text(encoding="utf-8")
    section = page.split("## Search (successive halving)", 1)[1]
    block = yaml.safe_load(section.split("```yaml", 1)[1].split("```", 1)[0])
    cfg = validate({**TINY, **block})
    assert problems_of(block["search"]) == []
    search = parse_search(cfg["search"])
    assert search is not None and search.sample is not None
    first = next(iter(sample_candidates(search.space, search.sample, search.seed)))
    assert f"`{first}`" in section
    budgets = rung_budgets(search.min_epochs, search.max_epochs, search.eta)
    assert rung_sizes(search.sample, search.eta, len(budgets)) == [27, 9, 3]
    assert " → ".join(map(str, budgets)) + " epochs" in section


def test_sampled_draws_become_named_runs_and_cross_validated_candidates_are_refused() -> None:
    from segpipe.workflow.search import (
        Search,
        candidate_problems,
        sampled_experiments,
        schedule_epochs,
    )

    space = {"train.lr": {"log_uniform": [1e-4, 1e-2]}, "train.augment.hflip": {"uniform": [0, 1]}}
    cfg = {"search": {"min_epochs": 1, "max_epochs": 3, "sample": 3, "space": space}}
    runs = sampled_experiments(cfg)
    assert runs is not None and len(runs) == 3
    for name, override in runs.items():
        assert set(override) == {"train"} and set(override["train"]) == {"lr", "augment"}
        assert set(override["train"]["augment"]) == {"hflip"}
        assert name.startswith("s0")
    assert sampled_experiments({"search": None}) is None
    assert sampled_experiments({"search": {**cfg["search"], "sample": None}}) is None
    search = Search(min_epochs=1, max_epochs=9)
    raw = {**TINY, "experiments": {"a": {}, "b": {"split": {"folds": 2}}}}
    runs = expand_runs(raw, validate(raw), validate)
    (problem,) = candidate_problems(search, runs)
    assert problem.startswith("config option 'split.folds'") and "'b'" in problem
    assert candidate_problems(search, runs[:1]) == []
    assert candidate_problems(None, runs[1:]) == []
    assert schedule_epochs(search, "cosine") == 9 and schedule_epochs(search, "constant") is None


# --- what a space can draw, and what a search can compare ---------------------------------


@pytest.mark.parametrize(
    ("space", "words"),
    [
        (
            {"train.batch_size": {"int": [1, 8]}},
            "'search.space.train.batch_size': int [1, 8] can draw 1, too small: the "
            "Unet-tu-resnet10t model's BatchNorm needs at least 2 samples per batch",
        ),
        (
            {"train.batch_size": {"choice": [4, 1]}},
            "'search.space.train.batch_size': choice [4, 1] can draw 1, too small",
        ),
        (
            {"train.batch_size": {"int": [0, 8]}},
            "'search.space.train.batch_size': int [0, 8] can draw 0: 0 is less than the minimum of 1",
        ),
        (
            {"train.batch_size": {"uniform": [2, 8]}},
            "'search.space.train.batch_size': uniform draws fractions, but the option takes "
            "whole numbers; use int",
        ),
        (
            {"train.image_size": {"int": [32, 128]}},
            "'search.space.train.image_size': int [32, 128] draws every whole number from 32 "
            "to 128, but the option takes multiples of 32; use choice",
        ),
        (
            {"train.loss": {"choice": ["ce", "hinge"]}},
            "'search.space.train.loss': choice ['ce', 'hinge'] can draw 'hinge': 'hinge' is not "
            "one of",
        ),
        ({"train.lrr": {"uniform": [0, 1]}}, "'search.space.train.lrr': no such option"),
        *[
            ({"train.lr": {kind: bounds}}, f"'search.space.train.lr': {words}")
            for kind, bounds, words in [
                ("uniform", [0.2, 0.1], "uniform low 0.2 is above high 0.1"),
                ("log_uniform", [0.2, 0.1], "log_uniform low 0.2 is above high 0.1"),
                ("log_uniform", [0, 0.1], "log_uniform bounds must be above 0"),
                ("log_uniform", [-0.1, 0.1], "log_uniform bounds must be above 0"),
                ("log_uniform", [-0.2, -0.1], "log_uniform bounds must be above 0"),
            ]
        ],
        ({"train.seed": {"int": [5, 2]}}, "'search.space.train.seed': int low 5 is above high 2"),
        (
            {"train.augment.hflip": {"uniform": [0.5, 2]}},
            "'search.space.train.augment.hflip': uniform [0.5, 2] can draw 2: 2 is greater "
            "than the maximum of 1",
        ),
    ],
)
def test_a_range_that_can_draw_what_its_option_refuses_fails_validation(space, words) -> None:
    cfg = {**TINY, "search": {**BUDGET, "sample": 3, "space": space}}
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg, SCHEMA)
    assert f"config option {words}" in str(exc.value)


def test_a_batch_of_one_is_refused_before_any_job_for_a_model_with_batchnorm() -> None:
    cfg = {**TINY, "train": {**TINY["train"], "batch_size": 1}}
    with pytest.raises(ConfigError, match="'train.batch_size': 1 is too small: the Unet"):
        validate_config(cfg, SCHEMA)
    good = {
        **TINY,
        "search": {**BUDGET, "sample": 3, "space": {"train.batch_size": {"int": [2, 8]}}},
    }
    assert validate_config(good, SCHEMA)["search"]["space"] == good["search"]["space"]


@pytest.mark.parametrize(
    ("option", "spec", "words"),
    [
        ("predict.tta", {"choice": [[], ["hflip"]]}, "only changes how the model is assessed"),
        ("report.gallery_size", {"int": [1, 3]}, "only changes how the model is assessed"),
        ("evaluate.foreground_classes", {"choice": [[0], [0, 2]]}, "only changes how"),
        ("train.num_workers", {"int": [0, 2]}, "changes nothing a job writes"),
        ("resources.train.threads", {"int": [1, 2]}, "changes nothing a job writes"),
        ("train.epochs", {"int": [2, 9]}, "is set by the search itself"),
        ("train.schedule_epochs", {"int": [9, 20]}, "is set by the search itself"),
    ],
)
def test_a_space_over_options_that_do_not_train_the_model_is_refused(option, spec, words) -> None:
    problems = problems_of({**BUDGET, "sample": 3, "space": {option: spec}})
    (line,) = problems
    assert line.startswith(f"config option 'search.space.{option}': "), line
    assert words in line


def candidates_problems(**sections) -> list[str]:
    from segpipe.workflow.search import candidate_problems

    raw = {**TINY, "search": BUDGET, **sections}
    cfg = validate(raw)
    return candidate_problems(parse_search(cfg["search"]), expand_runs(raw, cfg, validate))


def test_candidates_that_train_one_model_or_override_what_the_search_sets_are_refused() -> None:
    (line,) = candidates_problems(grid={"train.lr": [0.1, 0.2], "predict.tta": [[], ["hflip"]]})
    assert line == (
        "runs 'lr-0.1_tta-empty' and 'lr-0.1_tta-hflip': candidates that train the same model "
        "(they differ only in predict.tta, which does not train it); a search compares "
        "trainings: search options that train the model"
    )
    (line,) = candidates_problems(
        experiments={"a": {}, "b": {"train": {"epochs": 5}}, "c": {"train": {"lr": 0.1}}}
    )
    assert line.startswith("run 'b': option 'train.epochs' is set by the search itself")
    assert candidates_problems(grid={"train.lr": [0.1, 0.2, 0.3]}) == []
    (line,) = candidates_problems(
        experiments={"a": {}, "b": {"train": {"lr": TINY["train"]["lr"]}}}
    )
    assert "(they are the same run)" in line


def test_draws_that_repeat_a_candidate_are_refused_naming_sample() -> None:
    from segpipe.workflow.search import candidate_problems, sampled_experiments

    search = {
        **BUDGET,
        "sample": 6,
        "space": {"train.encoder": {"choice": ["resnet18", "resnet34"]}},
    }
    raw = {**TINY, "search": search}
    cfg = validate(raw)
    runs = expand_runs({**raw, "experiments": sampled_experiments(cfg)}, cfg, validate)
    (line,) = candidate_problems(parse_search(cfg["search"]), runs)
    assert line.startswith("config option 'search.sample': draws 's00_encoder-")
    assert "drew the same values" in line


def test_a_rung_starts_from_the_previous_one_and_the_winner_is_its_last() -> None:
    from segpipe.workflow.search import last_rung_files, previous_rung, rung_outputs

    assert previous_rung("a", 0) == []
    assert previous_rung("a", 2) == [
        "results/search/a/rung1/last.pt",
        "results/search/a/rung1/best.pt",
    ]
    assert rung_outputs("b", 1) == {
        "best": "results/search/b/rung1/best.pt",
        "last": "results/search/b/rung1/last.pt",
        "history": "results/search/b/rung1/history.csv",
        "model": "results/search/b/rung1/model.json",
    }
    assert last_rung_files([1, 2, 4], [[0, 1, 2], [1, 2]]) == [
        "results/search/bracket0/rung2.csv",
        "results/search/bracket1/rung2.csv",
    ]
