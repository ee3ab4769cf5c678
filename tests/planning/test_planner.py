"""Planning from a fingerprint to a config, with a model of the probe: the plan's steps, and the
property that every planned config validates and its batch fits the budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segpipe.data.split import fold_assignment, split_dataset
from segpipe.planning import rules
from segpipe.planning.planner import PlanRequest, assemble, header, plan_fingerprint
from segpipe.planning.render import check_planned, render
from segpipe.planning.rules import PlanError, Target
from segpipe.workflow.config import load_schema

from helpers.fabricated import fingerprint, probe_model, value
from helpers.repo import REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    """config/config.yaml of the working directory is what a planned config layers over."""
    monkeypatch.chdir(REPO)


def request(target: Target | None = None, **given) -> PlanRequest:
    dataset = {"root": "data/cells", "layout": "folder", "images_dir": "images"}
    return PlanRequest(dataset, given, target=target or Target())


def planned_text(fp: dict, req: PlanRequest, probe=None) -> tuple[str, dict, object]:
    plan = plan_fingerprint(fp, req, probe or probe_model())
    text = render(plan.config, plan.comments, header(plan.fingerprint, "x.yaml", "x.json"))
    return text, check_planned(text, plan.config, SCHEMA), plan


def test_a_membrane_dataset_plans_a_config_that_validates_and_borrows_nothing():
    fp = fingerprint([value(0, 0.22, width=3), value(255, 0.78, width=15)], pairs=30)
    text, cfg, plan = planned_text(fp, request(Target(max_size=256, any_orientation=True)))
    assert cfg["classes"] == ["class_0", "class_255"] and cfg["remap"]["table"] == {0: 0, 255: 1}
    assert cfg["train"]["resize"] == "keep_aspect" and cfg["train"]["image_scale"] == 0.67
    assert cfg["split"]["folds"] == 5 and cfg["evaluate"]["foreground_classes"] == [0]
    assert cfg["run_name"] == "cells" and "Oxford" not in text
    assert "# 'class_0' 5th-percentile width 3 px -> 2 px at 0.67" in text
    assert plan.fingerprint["probe"]["trials"][0]["batch"] == 2


def test_every_planned_option_has_its_figure_beside_it():
    fp = fingerprint([value(0, 0.5), value(1, 0.45), value(2, 0.05)], pairs=400)
    text, _, plan = planned_text(fp, request())
    lines = text.splitlines()
    for option in (
        "classes",
        "remap.table",
        "train.image_size",
        "train.batch_size",
        "train.epochs",
        "train.loss",
    ):
        key = option.split(".")[-1]
        at = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"{key}:"))
        assert "#" in lines[at] or lines[at - 1].lstrip().startswith("#"), option
        assert plan.choices[option].why


def test_given_class_names_name_the_planned_classes():
    fp = fingerprint([value(0, 0.22), value(255, 0.78)])
    _, cfg, _ = planned_text(fp, request(classes=["membrane", "cell"]))
    assert cfg["classes"] == ["membrane", "cell"]
    with pytest.raises(PlanError, match="3 names given, but the masks hold 2 class values"):
        planned_text(fp, request(classes=["a", "b", "c"]))


def test_an_input_too_large_for_a_batch_of_2_is_shrunk():
    fp = fingerprint([value(0, 0.5, width=200), value(1, 0.5, width=200)], pairs=400)
    probe = probe_model(baseline_mb=800, per_megapixel_mb=20_000)  # 2 x 256² = 2.6 GB
    _, cfg, plan = planned_text(fp, request(Target(memory_mb=2000, max_size=256)), probe)
    assert cfg["train"]["image_size"] < 256 and cfg["train"]["batch_size"] == 2
    assert "did not fit a batch of 2" in plan.choices["train.image_size"].why


def test_a_budget_that_fits_nothing_is_refused_in_one_line():
    fp = fingerprint(pairs=400)
    with pytest.raises(
        PlanError, match=r"a batch of 2 does not fit in 500 MB on cpu even at 32 px"
    ):
        planned_text(fp, request(Target(memory_mb=500)))


def test_a_search_plans_a_search_section_that_can_run():
    fp = fingerprint(pairs=40)
    _, cfg, _ = planned_text(fp, request(Target(search=6)))
    assert cfg["search"]["sample"] == 6 and cfg["split"]["folds"] is None


def test_the_planned_config_lists_every_option_of_config_yaml():
    """Layered over config/config.yaml it changes nothing: no Oxford option is borrowed."""
    from segpipe.workflow.config import base_config

    base = base_config()
    _, _, plan = planned_text(fingerprint(pairs=200), request())
    for section, options in base.items():
        assert section in plan.config, section
        if isinstance(options, dict):
            assert set(options) <= set(plan.config[section]), section


def test_an_unplaced_option_is_a_bug_the_assembly_names():
    choices = plan_fingerprint(fingerprint(pairs=200), request(), probe_model()).choices
    with pytest.raises(AssertionError, match="train.mystery"):
        assemble(request(), {**choices, "train.mystery": rules.Choice(1)})


# ----------------------------------------------------------------------------- properties


@st.composite
def fingerprints(draw):
    n_values = draw(st.integers(2, 24))
    colours = draw(st.booleans())
    raw = draw(st.lists(st.floats(0.001, 1.0), min_size=n_values, max_size=n_values))
    shares = [r / sum(raw) for r in raw]
    keys = (
        [[i, 255 - i, (7 * i) % 256] for i in range(n_values)]
        if colours
        else sorted(draw(st.sets(st.integers(0, 255), min_size=n_values, max_size=n_values)))
    )
    widths = draw(
        st.lists(st.one_of(st.none(), st.floats(1, 300)), min_size=n_values, max_size=n_values)
    )
    values = [value(k, s, width=w) for k, s, w in zip(keys, shares, widths, strict=True)]
    pairs = draw(st.integers(5, 20_000))
    unusable = draw(st.integers(0, pairs // 3))
    found = pairs + unusable + draw(st.sampled_from([0, 0, pairs * 3]))  # more: a sample
    official = draw(st.booleans())
    lists = {"trainval": found - found // 4, "test": found // 4} if official else None
    return fingerprint(
        values,
        pairs=pairs,
        found=found,
        unusable=unusable,
        width=draw(st.integers(1, 6000)),
        height=draw(st.integers(1, 6000)),
        spread_ratio=draw(st.floats(1.0, 4.0)),
        aspect_ratio=draw(st.floats(1.0, 3.0)),
        encoding="colours" if colours else "values",
        lists=lists,
        duplicates=[["a", "b"]] * draw(st.integers(0, 2)),
    )


targets = st.builds(
    Target,
    device=st.sampled_from(["cpu", "cuda"]),
    memory_mb=st.integers(1000, 80_000),
    max_size=st.sampled_from([32, 64, 128, 256, 512, 1024]),
    max_batch=st.integers(2, 64),
    hours=st.one_of(st.none(), st.floats(0.01, 100)),
    any_orientation=st.booleans(),
    threads=st.integers(1, 8),
    search=st.one_of(st.none(), st.integers(2, 12)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fp=fingerprints(),
    target=targets,
    baseline=st.floats(200, 3000),
    per_megapixel=st.floats(50, 50_000),
)
def test_every_planned_config_validates_and_its_batch_fits_the_budget(
    fp, target, baseline, per_megapixel
):
    """Random fingerprints, targets and probes: the plan is refused in one line, or its config
    validates as the pipeline validates it (schema, search, layered over config.yaml), its batch
    was measured within the budget and the cap, and its split can be carved as split.py does."""
    probe = probe_model(baseline_mb=baseline, per_megapixel_mb=per_megapixel)
    try:
        text, cfg, plan = planned_text(fp, request(target), probe)
    except PlanError as exc:
        assert "\n" not in str(exc)
        return
    batch = cfg["train"]["batch_size"]
    measured = next(t for t in plan.fingerprint["probe"]["trials"] if t["batch"] == batch)
    assert measured["measured"] and measured["peak_mb"] <= target.memory_mb
    train_pairs, _ = rules.split_sizes(fp, plan.choices)
    assert 2 <= batch <= rules.batch_cap(train_pairs, target)
    size = cfg["train"]["image_size"]
    assert size % 32 == 0 and 32 <= size <= max(32, target.max_size)
    assert "Oxford" not in text
    carve(fp, cfg)


def carve(fp: dict, cfg: dict) -> None:
    """The planned split of the whole dataset's usable pairs, as split.py makes it: no split
    empty, every training part of at least 2 images."""
    usable = rules.usable_total(fp)
    ids = [f"{i:05d}" for i in range(usable)]
    test = fp["split_lists"].get("test", 0)
    index = pd.DataFrame(
        {"id": ids, "group": "", "official_split": ["test"] * test + ["trainval"] * (usable - test)}
    )
    if not test:
        index["official_split"] = ""
    index["image"] = index["mask"] = index["id"]
    index["height"] = index["width"] = 1
    split = cfg["split"]
    parts = split_dataset(
        index,
        seed=split["seed"],
        val_fraction=split["val_fraction"],
        test_fraction=split["test_fraction"],
        use_official=split["use_official"],
    )
    if split["folds"]:
        pool = pd.concat([parts["train"], parts["val"]])
        folds = fold_assignment(pool, folds=split["folds"], seed=split["seed"])
        assert np.bincount(folds.to_numpy()).min() >= 1
        assert len(pool) - np.bincount(folds.to_numpy()).max() >= 2
    else:
        assert len(parts["train"]) >= 2


def test_a_given_ignore_index_is_the_planned_one():
    fp = fingerprint([value(0, 0.5), value(1, 0.4), value(255, 0.1)])
    _, cfg, _ = planned_text(fp, request(ignore_index=100))
    assert cfg["ignore_index"] == 100 and cfg["remap"]["ignore_value"] == 255
