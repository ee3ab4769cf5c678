"""Config validation: JSON Schema (with defaults filled in) plus the checks a schema cannot express.

Errors name the option as a dotted path, e.g. ``config option 'train.loss': 'foo' is not one of
['ce', 'dice', 'ce+dice', 'focal']``, and are raised before any job runs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


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


def _option(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        # The message says which key was unexpected; name it in full.
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            path = ".".join(filter(None, [path, extra[0]]))
            return f"config option '{path}' is unknown (valid here: {sorted(error.schema['properties'])})"
    return f"config option '{path or '<root>'}': {error.message}"


def load_schema(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict:
    """Return a validated copy of ``config`` with defaults filled in, or raise ConfigError.

    Integer keys of ``remap.table`` (as YAML writes them) are accepted and kept as ints.
    """
    cfg = copy.deepcopy(dict(config))
    table = cfg.get("remap", {}).get("table") if isinstance(cfg.get("remap"), dict) else None
    if isinstance(table, dict):
        cfg["remap"]["table"] = {str(k): v for k, v in table.items()}
    validator_cls = _with_defaults(jsonschema.validators.validator_for(schema))
    errors = sorted(validator_cls(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_option(e) for e in errors))
    cfg["remap"]["table"] = {int(k): int(v) for k, v in cfg["remap"]["table"].items()}
    check_semantics(cfg)
    return canonical(cfg)


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


def check_semantics(cfg: Mapping[str, Any]) -> None:
    """Cross-field checks: class ids in range, list lengths, model names known to smp."""
    from segpipe.models import check_model_names

    n = len(cfg["classes"])
    ignore = cfg["ignore_index"]
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
    weights = cfg["train"]["class_weights"]
    if weights is not None and len(weights) != n:
        problems.append(
            f"config option 'train.class_weights': {len(weights)} weights for {n} classes"
        )
    fg = cfg["evaluate"]["foreground_classes"]
    if fg is not None and any(c >= n for c in fg):
        problems.append(f"config option 'evaluate.foreground_classes': ids must be < {n}")
    syn = cfg["dataset"]["synthetic"]
    if syn["min_size"] > syn["max_size"]:
        problems.append("config option 'dataset.synthetic.min_size' is larger than max_size")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    try:
        check_model_names(
            cfg["train"]["arch"], cfg["train"]["encoder"], cfg["train"]["encoder_weights"]
        )
    except ValueError as exc:
        raise ConfigError(f"invalid config:\n  {exc}") from None
