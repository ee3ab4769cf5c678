"""Config validation and helpers shared by the rule files."""

from pathlib import Path

from segpipe.config import ConfigError, load_schema, validate_config
from segpipe.download import OXFORD_PETS_RESOURCES


def _replace_tables_from_command_line(cfg):
    """A remap table given in a --configfile/--config replaces config.yaml's table whole.

    Snakemake merges dicts key by key, which would silently add config.yaml's trimap values
    to a user's table.
    """
    override = workflow.config_settings.overwrite_config or {}
    table = (override.get("remap") or {}).get("table")
    if table is not None:
        cfg["remap"]["table"] = table


_replace_tables_from_command_line(config)
try:
    _validated = validate_config(
        config, load_schema(Path(workflow.basedir) / "config/schema.yaml")
    )
except ConfigError as exc:
    raise ValueError(str(exc)) from None
config.clear()
config.update(_validated)

EVAL_SPLITS = ["val", "test"]
SOURCE = config["dataset"]["source"]


wildcard_constraints:
    split="|".join(EVAL_SPLITS),


def res(rule_name, key):
    """Threads / mem_mb / runtime of a rule, from config['resources']."""
    return config["resources"][rule_name][key]


def dataset_dir():
    """Where the dataset lives: the download output, or the user's own folder."""
    if SOURCE == "folder":
        return config["dataset"]["root"]
    return "results/download/dataset"


def dataset_layout():
    return "folder" if SOURCE == "folder" else "oxford"


def download_resources():
    """Archives to fetch for oxford_pets (config urls, else the official ones); synthetic reads
    its resources.json, written by rule synthesize."""
    if SOURCE == "oxford_pets":
        return config["dataset"].get("urls") or OXFORD_PETS_RESOURCES
    return []
