"""Config validation: JSON Schema (with defaults filled in) plus the checks a schema cannot express.

Errors name the option as a dotted path, e.g. ``config option 'train.loss': 'foo' is not one of
['ce', 'dice', 'ce+dice', 'focal']``, and are raised before any job runs.
"""

from __future__ import annotations

import copy
import math
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from segpipe.models.model_input import ModelInput
from segpipe.params import DATA_OPTIONS, MODEL, has_dotted, option_class
from segpipe.workflow import paths


class ConfigError(ValueError):
    """A config value is wrong; the message names the option."""


def _with_defaults(validator_class):
    """A validator class that also fills in ``default`` values of absent properties."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if name not in instance and "default" in sub:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _shown(key: Any) -> str:
    """A key of the user's as it is named in a message: invisible and line-breaking characters
    escaped (``'\\x1e'``), so that the message stays one line and shows what was typed."""
    text = str(key)
    return text if text.isprintable() else repr(text)[1:-1]


def _branch_keys(branches: Any) -> list[str] | None:
    """The key each branch of a oneOf requires, where every branch is an object told apart by
    one required key (search.space's ranges: log_uniform, uniform, int, choice); else None."""
    if not isinstance(branches, list):
        return None
    keys = [b.get("required", []) if isinstance(b, Mapping) else [] for b in branches]
    if any(len(k) != 1 for k in keys):
        return None
    return [k[0] for k in keys]


def _error_branch_keys(error: jsonschema.ValidationError) -> list[str] | None:
    if error.validator not in ("oneOf", "anyOf"):
        return None
    return _branch_keys(error.validator_value)


def _branch(keys: list[str] | None, instance: Any) -> int | None:
    """The branch an object picks by its one key (:func:`_branch_keys`); None when it has none of
    the keys, more than one, or is no object."""
    if keys is None or not isinstance(instance, dict) or len(instance) != 1:
        return None
    (key,) = instance
    return keys.index(key) if key in keys else None


def _leaf_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors that say what is wrong: under a oneOf of objects told apart by a key, those of
    the branch the instance's key picks (``'search.space.train.lr.choice': [] should be
    non-empty``, not "is not valid under any of the given schemas"); else the error itself."""
    branch = _branch(_error_branch_keys(error), error.instance)
    if branch is None:
        return [error]
    return [
        leaf
        for sub in error.context or []
        if sub.relative_schema_path[0] == branch
        for leaf in _leaf_errors(sub)
    ]


def _option(error: jsonschema.ValidationError) -> str:
    path = ".".join(_shown(p) for p in error.absolute_path)
    keys = _error_branch_keys(error)
    if keys is not None:
        got = sorted(map(str, error.instance)) if isinstance(error.instance, dict) else []
        given = ", ".join(got) or (
            "none" if isinstance(error.instance, dict) else repr(error.instance)
        )
        return (
            f"config option '{path}': give exactly one of {', '.join(keys[:-1])} or "
            f"{keys[-1]} (got {given})"
        )
    if error.validator == "pattern" and "propertyNames" in error.schema_path:
        what = error.schema.get("description") if isinstance(error.schema, Mapping) else None
        if what:
            return f"config option '{path}': {_shown(error.instance)!r} is not {what}"
    if error.validator == "additionalProperties":
        schema, instance = error.schema, error.instance
        assert isinstance(schema, Mapping) and isinstance(instance, Mapping)  # an object's
        # The message says which key was unexpected; name it in full.
        extra = sorted(set(instance) - set(schema.get("properties", {})), key=str)
        if extra:
            path = ".".join(filter(None, [path, _shown(extra[0])]))
            return f"config option '{path}' is unknown (valid here: {sorted(schema['properties'])})"
    return f"config option '{path or '<root>'}': {error.message}"


def load_schema(path: str | Path) -> dict:
    """config/schema.yaml, read by libyaml where PyYAML has it (every Snakemake command reads it:
    5 ms against 40 ms for the pure-Python reader)."""
    with open(path, encoding="utf-8") as fh:
        return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML and Snakemake keep
    the last silently, so a section written twice loses the first one's options)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if (
                key_node.tag == "tag:yaml.org,2002:merge"
            ):  # "<<:" merges; its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
            if seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"key {key!r} given twice (first on line {first[key] + 1})",
                    problem_mark=key_node.start_mark,
                )
            first[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_config_file(path: str | Path) -> dict:
    """The options of a YAML (or JSON) config file, or ConfigError naming the file and, for a
    syntax error, its line and column: a missing, unreadable or empty file, or one that is not
    a mapping of options."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc}") from None
    try:
        cfg = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {_yaml_problem(exc)}") from None
    if cfg is None:
        raise ConfigError(f"config file '{path}' is empty (it sets no options)")
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"config file '{path}' holds a {type(cfg).__name__}, not a mapping of options "
            "(option: value lines)"
        )
    return cfg


def config_file_problem(path: str | Path) -> str | None:
    """For the Snakefile, before its ``configfile:``: why a config file that is there does not
    read as options (naming the file and line), or None. A missing file is left to Snakemake
    (``--configfile`` may stand in for it)."""
    if not Path(path).exists():
        return None
    try:
        load_config_file(path)
    except ConfigError as exc:
        return str(exc)
    return None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: where (1-based line and column) and what."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    what = " ".join(
        str(part) for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part
    )
    return where + (what or str(exc).replace("\n", " "))


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with a local ``$ref`` (``#/$defs/name``) replaced by what it points at."""
    while "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _types(schema: Mapping[str, Any]) -> list[str]:
    kinds = schema.get("type", [])
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _child_schema(schema: Mapping[str, Any], key: Any) -> Mapping[str, Any]:
    """The schema of an object's property ``key`` ({} when the schema says nothing of it)."""
    extra = schema.get("additionalProperties")
    return schema.get("properties", {}).get(key, extra if isinstance(extra, dict) else {})


def _normalise(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """``value`` with whole floats (32.0) made ints where the schema wants an integer, and ``~``
    expanded in path options (``format: path``), in nested objects and arrays too.

    JSON Schema counts 32.0 as an integer; passed on, it would reach paths (``results/.../32.0``)
    and torch as a float. Non-whole floats stay, and fail validation naming the option.
    """
    schema = _resolve(schema, root)
    branch = _branch(_branch_keys(schema.get("oneOf")), value)
    if branch is not None:
        schema = _resolve(schema["oneOf"][branch], root)
    types = _types(schema)
    if value in NULL_WORDS and "null" in types:
        return None
    if isinstance(value, float) and value.is_integer() and "integer" in types:
        return value if "number" in types else int(value)
    if isinstance(value, str) and schema.get("format") == "path":
        return os.path.expanduser(value)
    if isinstance(value, dict):
        return {k: _normalise(v, _child_schema(schema, k), root) for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_normalise(v, schema["items"], root) for v in value]
    return value


# How YAML writes null: what a nested --config value null arrives as (Snakemake reads nested
# values as strings). Null wherever an option takes null, quoted in a config file too.
NULL_WORDS = ("null", "Null", "NULL", "~")


def _non_finite(value: Any, path: str = "") -> list[str]:
    """A problem for each nan or infinite number (JSON Schema's bounds let nan through)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"config option '{path}': {value} is not a finite number"]
    items: Iterable[tuple[Any, Any]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return []
    return [p for k, v in items for p in _non_finite(v, ".".join(filter(None, [path, str(k)])))]


def _table_key(key: Any) -> str:
    """A remap.table key as the schema checks it: YAML's int 255 (or 255.0) as '255'."""
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any], *, check_models: bool = True
) -> dict:
    """Return a validated copy of ``config`` with defaults filled in, or raise ConfigError.

    ``check_models=False`` skips checking model names against smp's (segpipe.models.names; a
    cached list, built once per installed smp version), for Slurm job processes whose config the
    submitting process already checked.

    Integer keys of ``remap.table`` (as YAML writes them) are accepted and kept as ints; whole
    floats given for integer options (``image_size: 32.0``) become ints, other floats fail; ``~``
    is expanded in path options.
    """
    cfg = copy.deepcopy(dict(config))
    table = cfg.get("remap", {}).get("table") if isinstance(cfg.get("remap"), dict) else None
    if isinstance(table, dict):
        cfg["remap"]["table"] = {_table_key(k): v for k, v in table.items()}
    table_given = bool(table)
    validator = _validator(schema)
    errors = _parse_typed_strings(cfg, validator)
    normalised = _normalise(cfg, schema, schema)
    if normalised != cfg:  # a value changed: checked again (most configs need one pass only)
        errors = list(validator.iter_errors(normalised))
    cfg = normalised
    errors.sort(key=lambda e: list(e.absolute_path))
    problems = [_option(leaf) for e in errors for leaf in _leaf_errors(e)] + _non_finite(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    cfg["remap"]["table"] = {int(k): int(v) for k, v in cfg["remap"]["table"].items()}
    if cfg["remap"]["colors"]:
        if table_given:
            raise ConfigError(
                "invalid config:\n  config option 'remap.colors': give remap.table (single-channel "
                "masks) or remap.colors (RGB masks), not both"
            )
        cfg["remap"]["table"] = {}  # the colour table replaces the default trimap table
    _fill_layout_defaults(cfg["dataset"])
    if problems := _space_problems(cfg, schema):
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    check_semantics(cfg, check_models=check_models)
    return canonical(cfg)


def _option_schema(schema: Mapping[str, Any], option: str) -> Mapping[str, Any] | None:
    """The schema of a dotted option of a run (``train.augment.hflip``); None for no option."""
    node: Mapping[str, Any] = schema
    for key in option.split("."):
        found = _resolve(node, schema).get("properties", {}).get(key)
        if found is None:
            return None
        node = found
    return _resolve(node, schema)


def _searchable(option: str) -> bool:
    """Whether a search may draw ``option``: one that trains the model and is no data option
    (segpipe.params), or one of no class, which does not exist."""
    try:
        return option_class(option) == MODEL and option.split(".")[0] not in DATA_OPTIONS
    except KeyError:
        return True


def _space_problems(cfg: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """search.space ranges that can draw a value their option refuses, found before any draw:
    an option that does not exist, a bound or a choice that fails the option's schema,
    fractions for a whole-number option, every whole number for a multiple-of option."""
    problems = []
    for option, spec in ((cfg.get("search") or {}).get("space") or {}).items():
        where = f"config option 'search.space.{option}'"
        if not _searchable(option):
            continue  # segpipe.workflow.search says why it cannot be searched
        node = _option_schema(schema, option)
        if node is None:
            problems.append(f"{where}: no such option")
            continue
        kind, values = next(iter(spec.items()))
        problem = _range_problem(kind, values, node) or next(
            (
                f"{kind} {values} can draw {value!r}: {error.message}"
                for value in values
                for error in _validator(schema)
                .evolve(schema=node)
                .iter_errors(copy.deepcopy(value))
            ),
            None,
        )
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _range_problem(kind: str, values: list, node: Mapping[str, Any]) -> str | None:
    """What is wrong with a range whatever it draws: low above high, a log-uniform bound not
    above 0, fractions for a whole-number option, every whole number for a multiple-of one."""
    if kind == "choice":
        return None
    low, high = values
    types = _types(node)
    if low > high:
        return f"{kind} low {low} is above high {high}"
    if kind == "log_uniform" and low <= 0:
        return (
            f"log_uniform bounds must be above 0, got [{low}, {high}] (use uniform for a "
            "range that holds 0)"
        )
    if kind != "int" and "integer" in types and "number" not in types:
        return f"{kind} draws fractions, but the option takes whole numbers; use int"
    step = node.get("multipleOf")
    if kind == "int" and step and low < high:
        return (
            f"int {values} draws every whole number from {low} to {high}, but the option "
            f"takes multiples of {step}; use choice"
        )
    return None


_JSON_TYPES = {
    # A whole float ('32.0') is taken for an integer here and made an int by _normalise.
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


# The validator of each schema (by its id; the schema kept alive with it): building one takes
# longer than checking a config, and a search validates every draw's config.
_VALIDATORS: dict[int, tuple[Mapping[str, Any], Any]] = {}


def _validator(schema: Mapping[str, Any]):
    """A validator of ``schema`` that also fills in defaults (:func:`_with_defaults`)."""
    found = _VALIDATORS.get(id(schema))
    if found is None or found[0] is not schema:
        cls = _with_defaults(jsonschema.validators.validator_for(schema))
        found = _VALIDATORS[id(schema)] = (schema, cls(schema))
    return found[1]


def section_defaults(schema: Mapping[str, Any], section: str) -> dict[str, Any]:
    """What validation fills in for a config ``section`` left out: each of its options'
    default, nested sections' too (``train.augment``). The one source of the defaults that
    callers of the package's functions pass (:class:`segpipe.training.train_job.TrainConfig` has
    none of its own)."""
    values: dict[str, Any] = {}
    _validator(schema["properties"][section]).validate(values)
    return values


def _parse_typed_strings(cfg: dict, validator) -> list[jsonschema.ValidationError]:
    """Strings where the schema wants a number, boolean or null become that value if they are
    one in YAML, in place; the errors of ``cfg`` as it is then.

    Snakemake reads the values of a nested ``--config 'train={image_size: 64, lr: 0.01}'`` as
    strings ('64', '0.01'); parsed here, they are checked like values from a config file, so
    '-64' is "less than the minimum", not "not an integer". Strings that are no such value stay
    as they are and fail validation, naming the option.
    """
    errors: list[jsonschema.ValidationError] = []
    for _ in range(8):  # a parsed value can uncover a deeper one (a list given as a string)
        changed = False
        errors = list(validator.iter_errors(cfg))
        for error in (leaf for e in errors for leaf in _leaf_errors(e)):
            if error.validator != "type" or not isinstance(error.instance, str):
                continue
            try:
                value = yaml.safe_load(error.instance)
            except yaml.YAMLError:
                continue
            wanted: Any = error.validator_value
            wanted = [wanted] if isinstance(wanted, str) else wanted
            if any(_JSON_TYPES.get(t, lambda v: False)(value) for t in wanted):
                _set_at(cfg, list(error.absolute_path), value)
                changed = True
        if not changed:
            return errors
    return list(validator.iter_errors(cfg))


def _set_at(cfg: dict, path: list, value: Any) -> None:
    *parents, last = path
    for key in parents:
        cfg = cfg[key]
    cfg[last] = value


def dataset_layout(dataset: Mapping[str, Any]) -> str:
    """The layout a config's dataset is read in: ``dataset.layout`` for a user's folder, oxford
    for the download sources (oxford_pets, synthetic)."""
    return dataset["layout"] if dataset["source"] == "folder" else "oxford"


def dataset_options(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The dataset layout and remap options of a validated config, as
    :func:`segpipe.data.remap.remap_dataset` takes them: rule remap's params (a changed value reruns
    remap and what follows it) and, but for ``max_quarantine_fraction``, what ``segpipe verify
    --configfile`` checks the dataset with (:func:`segpipe.data.verify.verify_dataset`)."""
    dataset, remap = cfg["dataset"], cfg["remap"]
    return {
        "layout": dataset_layout(dataset),
        "images_dir": dataset["images_dir"],
        "masks_dir": dataset["masks_dir"],
        "mask_suffix": dataset["mask_suffix"],
        "split_lists": dataset["split_lists"],
        "max_image_pixels": dataset["max_image_pixels"],
        "table": remap["table"],
        "colors": remap["colors"],
        "ignore_value": remap["ignore_value"],
        "unmapped": remap["unmapped"],
        "max_quarantine_fraction": remap["max_quarantine_fraction"],
        "ignore_index": cfg["ignore_index"],
        "class_names": cfg["classes"],
    }


def _fill_layout_defaults(dataset: dict) -> None:
    """images_dir/masks_dir left null get the layout's directories (download sources: oxford)."""
    from segpipe.data.dataset_layouts import LAYOUT_DIRS

    images, masks = LAYOUT_DIRS[dataset_layout(dataset)]
    dataset["images_dir"] = dataset["images_dir"] or images
    dataset["masks_dir"] = dataset["masks_dir"] or masks


def canonical(value: Any) -> Any:
    """Sort mapping keys recursively.

    Snakemake compares a rule's params by their text, so two configs that differ only in key
    order must give identical params, or reordering a YAML file would rerun the pipeline.
    """
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=lambda k: (str(type(k)), k))}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def check_semantics(cfg: Mapping[str, Any], *, check_models: bool = True) -> None:
    """Cross-field checks: class ids in range, list lengths, options that contradict each
    other (each message names both), model names known to smp."""
    problems = [*_class_problems(cfg), *_remap_problems(cfg), *_train_problems(cfg)]
    problems += _run_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    if not check_models:
        return
    from segpipe.models.names import check_model_names

    try:
        train = cfg["train"]
        check_model_names(
            train["arch"],
            train["encoder"],
            train["encoder_weights"],
            train["encoder_depth"],
            train["decoder_channels"],
        )
    except ValueError as exc:
        raise ConfigError(f"invalid config:\n  {exc}") from None
    if problems := _batch_problems(cfg):
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def _batch_problems(cfg: Mapping[str, Any]) -> list[str]:
    """A training batch of one sample, given (train.batch_size) or drawn (search.space), for a
    model with BatchNorm, which cannot train on it: found before any job, where the train job
    would fail (segpipe.training.preflight.check_batch_size). Builds the model only then."""
    train = cfg["train"]
    spec = ((cfg.get("search") or {}).get("space") or {}).get("train.batch_size")
    if spec:
        kind, values = next(iter(spec.items()))
        small = [v for v in (values[:1] if kind == "int" else values) if _whole(v) and v < 2]
        where, what = (
            "search.space.train.batch_size",
            f"{kind} {values} can draw {min(small or [0])}, too small",
        )
    else:
        small = [train["batch_size"]] if train["batch_size"] < 2 else []
        where, what = "train.batch_size", f"{train['batch_size']} is too small"
    if not small:
        return []
    from segpipe.models.build import needs_two_per_batch

    channels = train["decoder_channels"]
    model = (train["arch"], train["encoder"], len(cfg["classes"]), train["encoder_depth"])
    if not needs_two_per_batch(*model, None if channels is None else tuple(channels)):
        return []
    return [
        f"config option '{where}': {what}: the {train['arch']}-{train['encoder']} model's "
        "BatchNorm needs at least 2 samples per batch; use 2 or more"
    ]


def _whole(value: Any) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value == int(value)


def _class_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Class ids of the remap table and colours within the classes (or ignore_index)."""
    n, ignore = len(cfg["classes"]), cfg["ignore_index"]
    problems = []
    if ignore < n:
        problems.append(
            f"config option 'ignore_index': {ignore} collides with class ids 0..{n - 1}"
        )
    for raw, cls in cfg["remap"]["table"].items():
        if cls >= n and cls != ignore:
            problems.append(
                f"config option 'remap.table': value {raw} maps to class {cls}, but 'classes' "
                f"has only {n} entries (ids 0..{n - 1}; {ignore} = ignore)"
            )
    for entry in cfg["remap"]["colors"]:
        if entry["class"] >= n and entry["class"] != ignore:
            problems.append(
                f"config option 'remap.colors': colour {entry['color']} maps to class "
                f"{entry['class']}, but 'classes' has only {n} entries (ids 0..{n - 1}; "
                f"{ignore} = ignore)"
            )
    return problems


def _remap_problems(cfg: Mapping[str, Any]) -> list[str]:
    """A raw value both mapped and ignored; ignore_value beside colours; a colour twice."""
    remap, ignore = cfg["remap"], cfg["ignore_index"]
    problems = []
    value = remap["ignore_value"]
    if value is not None and remap["table"].get(value, ignore) != ignore:
        problems.append(
            f"config options 'remap.table' and 'remap.ignore_value': value {value} maps to class "
            f"{remap['table'][value]} and is ignored; drop it from one of them"
        )
    if value is not None and remap["colors"]:
        problems.append(
            "config options 'remap.ignore_value' and 'remap.colors': ignore_value is a value of "
            "single-channel masks, unused with colours; give a colour class "
            f"{ignore} (ignore_index) to ignore it"
        )
    colors = [tuple(e["color"]) for e in remap["colors"]]
    twice = sorted({c for c in colors if colors.count(c) > 1})
    if twice:
        problems.append(f"config option 'remap.colors': colours listed twice: {twice}")
    return problems


# train.loss values whose loss has a cross-entropy term, the only one class_weights weigh.
WEIGHTED_LOSSES = ("ce", "ce+dice")


def _train_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Decoder stages, class weights and foreground classes against the classes and loss;
    the schedule's length against the epochs."""
    n, train = len(cfg["classes"]), cfg["train"]
    problems = []
    channels = train["decoder_channels"]
    if channels is not None and len(channels) != train["encoder_depth"]:
        problems.append(
            "config options 'train.decoder_channels' and 'train.encoder_depth': "
            f"{len(channels)} decoder stages, but encoder_depth is {train['encoder_depth']} (one "
            "channel count per stage)"
        )
    weights = train["class_weights"]
    if weights is not None and len(weights) != n:
        problems.append(
            f"config option 'train.class_weights': {len(weights)} weights for {n} classes"
        )
    if weights is not None and train["loss"] not in WEIGHTED_LOSSES:
        problems.append(
            f"config options 'train.class_weights' and 'train.loss': loss {train['loss']} has no "
            f"cross-entropy term to weigh (weighted losses: {list(WEIGHTED_LOSSES)})"
        )
    if weights is not None and not any(weights):
        problems.append(
            "config option 'train.class_weights': every weight is 0 (the loss would be 0/0)"
        )
    schedule = train["schedule_epochs"]
    if schedule is not None and schedule < train["epochs"]:
        problems.append(
            f"config options 'train.schedule_epochs' and 'train.epochs': a schedule of "
            f"{schedule} epochs cannot cover {train['epochs']} epochs of training; set "
            "schedule_epochs to at least epochs, or null"
        )
    fg = cfg["evaluate"]["foreground_classes"]
    if fg is not None and any(c >= n for c in fg):
        problems.append(f"config option 'evaluate.foreground_classes': ids must be < {n}")
    elif fg is not None and set(fg) in (set(), set(range(n))):
        problems.append(
            f"config options 'evaluate.foreground_classes' and 'classes': {fg} leaves "
            f"{'no class' if fg else 'every class'} in the foreground (its IoU would mean "
            f"nothing); name some of class ids 0..{n - 1}"
        )
    return problems


def _run_problems(cfg: Mapping[str, Any]) -> list[str]:
    """Options that need another: the fold ensemble, sliding windows, synthetic sizes."""
    problems = []
    if cfg["predict"]["ensemble"] == "folds" and cfg["split"]["folds"] is None:
        problems.append(
            "config option 'predict.ensemble': folds averages the fold models, but split.folds "
            "is null (set split.folds: k, k >= 2)"
        )
    model_input = ModelInput.from_train(cfg["train"])
    if (problem := model_input.split_mode_problem(cfg["predict"]["mode"])) is not None:
        problems.append(f"config option 'predict.mode': {problem}")
    syn = cfg["dataset"]["synthetic"]
    if syn["min_size"] > syn["max_size"]:
        problems.append(
            "config options 'dataset.synthetic.min_size' and 'dataset.synthetic.max_size': "
            f"min_size {syn['min_size']} is larger than max_size {syn['max_size']}"
        )
    return problems


# Table-like options that a --configfile/--config replaces whole (see replace_whole_options).
REPLACED_FROM_COMMAND_LINE = (("train", "augment"), ("dataset", "split_lists"))


def replace_whole_options(cfg: dict, override: Mapping[str, Any] | None) -> dict:
    """``cfg`` (Snakemake's merged config) with the table-like options of ``override`` (the
    --configfile/--config part) replacing config.yaml's whole; ``cfg`` is changed in place.

    Snakemake merges dicts key by key, which would silently add config.yaml's trimap values to
    a user's table, or config.yaml's rotation and colour jitter to an example's flips-only
    augmentation. remap.table and remap.colors are alternatives: when either is given, both come
    from the command line only.
    """
    override = override or {}
    remap = override.get("remap") or {}
    if "table" in remap or "colors" in remap:
        cfg.setdefault("remap", {})
        for key in ("table", "colors"):
            cfg["remap"].pop(key, None)
            if remap.get(key) is not None:
                cfg["remap"][key] = remap[key]
    for section, key in REPLACED_FROM_COMMAND_LINE:
        value = (override.get(section) or {}).get(key)
        if value is not None:
            cfg.setdefault(section, {})[key] = value
    return cfg


BASE_CONFIG = "config/config.yaml"
"""The Snakefile's ``configfile:``, relative to the working directory as Snakemake reads it."""


def merge_config(config: Any, override: Mapping[str, Any]) -> Any:
    """``config`` updated with ``override`` as Snakemake's ``update_config`` does (in place
    where ``config`` is a mapping): a mapping merged key by key, recursively, into what is
    there (a value that is no mapping is replaced by one, unless the mapping is empty); any
    other value (a list, null) replacing whole."""
    for key, value in override.items():
        if not isinstance(config, Mapping):
            config = {}
        if isinstance(value, Mapping):
            config[key] = merge_config(config.get(key, {}), value)
        else:
            config[key] = copy.deepcopy(value)
    return config


def base_config(path: str | Path | None = BASE_CONFIG) -> dict:
    """The options of the Snakefile's ``configfile:`` ({} when it is missing, as Snakemake then
    runs on the --configfile options alone)."""
    return load_config_file(path) if path is not None and Path(path).is_file() else {}


def layered_config(
    files: Iterable[str | Path], base: str | Path | None = BASE_CONFIG
) -> tuple[dict, dict]:
    """The config Snakemake runs with ``--configfile FILES...``: ``base`` (when it exists, as
    Snakemake skips a missing ``configfile:`` beside --configfile) with the files merged over
    it in turn (:func:`merge_config`), and the table-like options of the files replacing base's
    (:func:`replace_whole_options`). Returns (that config, the files' own merged options)."""
    override: dict = {}
    for path in files:
        merge_config(override, load_config_file(path))
    merged = merge_config(base_config(base), override)
    return replace_whole_options(merged, override), override


DATASET_IDENTITY = (
    "source",
    "root",
    "layout",
    "images_dir",
    "masks_dir",
    "mask_suffix",
    "synthetic",
)
"""The dataset options that say which images and masks are read (not how they are fetched)."""
DESCRIBES_THE_DATASET = (
    "run_name",
    "dataset.name",
    "classes",
    "remap.table|remap.colors",
    "evaluate.foreground_classes",
    "report.title",
    "train.image_size",
    "train.epochs",
    "train.batch_size",
    "resources.train.mem_mb",
)
"""Options whose base values were chosen for the base config's dataset (Oxford-IIIT Pet): a
config that reads another dataset must give them (``a|b``: either)."""


def changes_dataset(base: Mapping[str, Any], override: Mapping[str, Any]) -> list[str]:
    """The dataset options of ``override`` that read other images and masks than ``base``'s
    (``dataset.root: data/cells``); none when it reads the same ones."""
    dataset, known = override.get("dataset") or {}, base.get("dataset") or {}
    return [
        f"dataset.{key}: {dataset[key]}"
        for key in DATASET_IDENTITY
        if key in dataset and dataset[key] != known.get(key)
    ]


def borrowed_options(base: Mapping[str, Any], override: Mapping[str, Any]) -> str | None:
    """One line naming every option that describes ``base``'s dataset and that ``override``
    (the --configfile/--config options) leaves to it although it reads another dataset; None
    when there is none. run_name is not needed where experiments, a grid or a search's draws
    name the runs."""
    changed = changes_dataset(base, override)
    if not changed:
        return None
    named = override.get("experiments") or override.get("grid")
    named = named or (override.get("search") or {}).get("sample")
    missing = [
        option.replace("|", " or ")
        for option in DESCRIBES_THE_DATASET
        if not (option == "run_name" and named)
        and not any(has_dotted(override, o) for o in option.split("|"))
        and any(has_dotted(base, o) for o in option.split("|"))
    ]
    if not missing:
        return None
    name = (base.get("dataset") or {}).get("name") or "another dataset"
    return (
        f"the config reads another dataset ({', '.join(changed)}) but leaves these options to "
        f"{BASE_CONFIG}, which chose them for {name}: {', '.join(missing)}; set them in your "
        "config (segpipe plan writes a config that sets every one)"
    )


def infer_images_problems(cfg: Mapping[str, Any], runs: Mapping[str, Mapping]) -> list[str]:
    """Why infer.images cannot be predicted as given: it differs between runs (with experiments,
    the run the comparison selects predicts it), or the folder is missing, a file, or holds
    results/ (where the predictions go). ``runs``: run name -> the run's validated config."""
    for name, run_cfg in runs.items():
        if run_cfg["infer"] != cfg["infer"]:
            return [
                f"run '{name}': option 'infer.images' is not an option of a run; the "
                "comparison predicts the folder with the run it selects"
            ]
    folder = cfg["infer"]["images"]
    if folder is None:
        return []
    path, results = Path(folder), Path(paths.RESULTS).resolve()
    if not path.exists():
        problem = f"folder '{folder}' not found"
    elif not path.is_dir():
        problem = f"'{folder}' is a file, not a folder of images"
    elif path.resolve() == results or path.resolve() in results.parents:
        problem = (
            f"folder '{folder}' holds {paths.RESULTS}/, where the predictions go; move the images"
        )
    else:
        return []
    return [f"config option 'infer.images': {problem}"]


def download_resources(dataset: Mapping[str, Any]) -> list:
    """Archives to fetch for oxford_pets (dataset.urls, else the official ones); synthetic reads
    its resources.json, written by rule synthesize; a folder downloads nothing."""
    if dataset["source"] != "oxford_pets":
        return []
    from segpipe.data.download import OXFORD_PETS_RESOURCES

    return dataset.get("urls") or OXFORD_PETS_RESOURCES


def main(argv: list[str] | None = None) -> int:
    """``python -m segpipe.workflow.config CONFIG...``: check that each config file reads as a mapping of
    options, before Snakemake reads it (Snakemake's own message for a YAML error names neither
    the file nor the line, and a missing file gives a traceback). One line per bad file; exit 2.
    """
    bad = 0
    for path in argv if argv is not None else sys.argv[1:]:
        try:
            load_config_file(path)
        except ConfigError as exc:
            print(f"segpipe: {exc}", file=sys.stderr)
            bad += 1
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
