"""Properties of config validation over values drawn from config/schema.yaml itself.

For every option the schema declares (nested ones, array items, the resources of each rule), a
value of any kind: valid ones, wrong types, whole and non-whole floats, nan and infinities,
values out of range, strings (as ``--config`` gives them), null, booleans where numbers belong
and numbers where booleans belong. ``validate_config`` either raises ConfigError with a line
naming the option's dotted path, or accepts, and the validated value has the schema's type
(integers are ints, never floats or booleans). Plus the options that contradict each other.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.workflow.config import ConfigError, validate_config

from helpers.config import SCHEMA, resolve
from helpers.repo import REPO

BASE = yaml.safe_load((REPO / "config" / "test.yaml").read_text(encoding="utf-8"))
BASE["dataset"]["root"] = "data"  # so that dataset.source: folder is valid on its own
# A search, so that each of its options is drawn within a section that has the required ones.
BASE["search"] = {"min_epochs": 1, "max_epochs": 9}
# Options with their own tests: the runs (test_experiments.py), the archives, the classes, and
# the remap table and colours (below and in test_config.py).
SKIPPED = {"experiments", "grid", "dataset.urls", "classes", "remap.table", "remap.colors"}


def types(node: dict) -> list[str]:
    kinds = node.get("type", [])
    return [kinds] if isinstance(kinds, str) else kinds


def options(node: dict, path: str = "") -> list[tuple[str, dict]]:
    """(dotted path, schema) of every option: each property, nested ones too."""
    found = []
    for name, sub in resolve(node).get("properties", {}).items():
        dotted = f"{path}.{name}".lstrip(".")
        if dotted in SKIPPED:
            continue
        sub = resolve(sub)
        found.append((dotted, sub))
        if "object" in types(sub):
            found += options(sub, dotted)
    return found


OPTIONS = options(SCHEMA)


def test_the_walk_finds_every_kind_of_option() -> None:
    paths = dict(OPTIONS)
    assert {"train.image_size", "train.augment.hflip", "resources.train.threads"} <= set(paths)
    assert {"dataset.synthetic.min_size", "train.decoder_channels", "predict.tta"} <= set(paths)
    assert {"dataset.split_lists.test", "infer.images", "remap.ignore_value"} <= set(paths)
    assert {t for _, node in OPTIONS for t in types(node)} >= {
        "integer",
        "number",
        "boolean",
        "string",
        "null",
        "array",
        "object",
    }


def valid_values(node: dict) -> st.SearchStrategy:
    """Values the schema allows (the type and its bounds, not the cross-field checks)."""
    node = resolve(node)
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kinds = [st.none()] if "null" in types(node) else []
    for kind in types(node):
        if kind == "integer":
            low, high = node.get("minimum", -(10**6)), node.get("maximum", 10**6)
            step = node.get("multipleOf", 1)
            kinds.append(st.integers(-(-low // step), high // step).map(lambda v, s=step: v * s))
        elif kind == "number":
            low, high = node.get("minimum", -1e6), node.get("maximum", 1e6)
            low, high = node.get("exclusiveMinimum", low), node.get("exclusiveMaximum", high)
            kinds.append(st.floats(low, high, exclude_min=True, exclude_max=True))
        elif kind == "boolean":
            kinds.append(st.booleans())
        elif kind == "string":
            kinds.append(st.text(max_size=12))
        elif kind == "array" and isinstance(node.get("items"), dict):
            kinds.append(st.lists(valid_values(node["items"]), max_size=6))
        elif kind == "object":
            props = {k: valid_values(v) for k, v in node.get("properties", {}).items()}
            kinds.append(st.fixed_dictionaries({}, optional=props))
    return st.one_of(kinds)


# Values of every kind, whatever the option: what a typo, YAML or --config can give.
ANY_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**9), 10**9),
    st.integers(-(10**4), 10**4).map(float),  # whole floats
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["32", "32.0", "32.5", "-1", "true", "null", "~", "1e3", "[1, 2]", "{}"]),
)
ANY_VALUE = st.one_of(
    ANY_SCALAR, st.lists(ANY_SCALAR, max_size=4), st.dictionaries(st.text(max_size=6), ANY_SCALAR)
)


def has_type(value: Any, node: dict) -> bool:
    """Whether a validated value is of the schema's type, ints as ints, nested values too."""
    node = resolve(node)
    checks = {
        "integer": lambda v: type(v) is int,
        "number": lambda v: type(v) in (int, float),
        "boolean": lambda v: type(v) is bool,
        "string": lambda v: type(v) is str,
        "null": lambda v: v is None,
        "array": lambda v: (
            type(v) is list and all(has_type(item, node.get("items", {})) for item in v)
        ),
        "object": lambda v: (
            type(v) is dict
            and all(has_type(v[k], sub) for k, sub in node.get("properties", {}).items() if k in v)
        ),
    }
    return not types(node) or any(checks[kind](value) for kind in types(node))


def with_option(path: str, value: Any) -> dict:
    cfg = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    section = cfg
    for key in parents:
        section = section.setdefault(key, {})
    section[last] = value
    return cfg


def at(cfg: dict, path: str) -> Any:
    for key in path.split("."):
        cfg = cfg[key]
    return cfg


def names(message: str, path: str) -> bool:
    """Whether a line of the message names the option (or an item or key of it)."""
    pattern = re.compile(rf"'{re.escape(path)}(\.[^']*)?'")
    return any(pattern.search(line) for line in message.splitlines())


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_every_option_is_either_rejected_by_name_or_accepted_with_its_type(data) -> None:
    path, node = data.draw(st.sampled_from(OPTIONS), label="option")
    value = data.draw(st.one_of(valid_values(node), ANY_VALUE), label="value")
    try:
        cfg = validate_config(with_option(path, value), SCHEMA, check_models=False)
    except ConfigError as exc:
        assert names(str(exc), path), str(exc)
        return
    assert has_type(at(cfg, path), node), (path, at(cfg, path))


INTEGER_OPTIONS = [(p, n) for p, n in OPTIONS if "integer" in types(n)]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_whole_float_is_the_integer_and_a_fraction_is_refused(data) -> None:
    path, node = data.draw(st.sampled_from(INTEGER_OPTIONS), label="option")
    number = data.draw(
        valid_values({k: v for k, v in node.items() if k != "type"} | {"type": "integer"})
    )
    try:
        want = at(validate_config(with_option(path, number), SCHEMA, check_models=False), path)
    except ConfigError:
        return  # refused for another reason (a cross-field check): as the float below
    for given_as in (float(number), f"{float(number)}"):
        got = at(validate_config(with_option(path, given_as), SCHEMA, check_models=False), path)
        assert got == want and type(got) is int
    try:
        validate_config(with_option(path, number + 0.5), SCHEMA, check_models=False)
    except ConfigError as exc:
        assert names(str(exc), path), str(exc)
    else:
        raise AssertionError(f"{path}: {number + 0.5} accepted")


RAW = st.integers(0, 6)
CLASS = st.sampled_from([0, 1, 2, 255])
KEYS = st.one_of(RAW, RAW.map(float), RAW.map(str))


@settings(max_examples=150, deadline=None)
@given(
    table=st.dictionaries(KEYS, st.one_of(CLASS, CLASS.map(float)), min_size=1, max_size=5),
    ignore_value=st.one_of(st.none(), RAW, st.just(255)),
)
def test_a_raw_value_is_mapped_or_ignored_never_both(table, ignore_value) -> None:
    cfg = with_option("remap", {"table": table, "ignore_value": ignore_value})
    ints = {int(float(k)): int(v) for k, v in table.items()}
    if len(ints) < len(table):  # 1 and 1.0 or '1': YAML cannot write such a table
        return
    contradiction = ignore_value in ints and ints[ignore_value] != 255
    try:
        validated = validate_config(cfg, SCHEMA, check_models=False)
    except ConfigError as exc:
        assert contradiction, str(exc)
        line = next(line for line in str(exc).splitlines() if "remap.ignore_value" in line)
        assert "'remap.table'" in line
        return
    assert not contradiction
    assert validated["remap"]["table"] == ints
    assert all(type(k) is int and type(v) is int for k, v in ints.items())


@settings(max_examples=60, deadline=None)
@given(
    loss=st.sampled_from(SCHEMA["properties"]["train"]["properties"]["loss"]["enum"]),
    weights=st.one_of(st.none(), st.lists(st.floats(0, 5), min_size=3, max_size=3)),
)
def test_class_weights_need_a_loss_they_weigh(loss, weights) -> None:
    train = {**BASE["train"], "loss": loss, "class_weights": weights}
    ok = weights is None or (loss in ("ce", "ce+dice") and any(weights))
    try:
        validate_config(with_option("train", train), SCHEMA, check_models=False)
    except ConfigError as exc:
        assert not ok and names(str(exc), "train.class_weights"), str(exc)
        if loss not in ("ce", "ce+dice"):
            assert "'train.loss'" in str(exc)
        return
    assert ok
