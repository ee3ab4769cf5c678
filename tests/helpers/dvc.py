"""dvc.yaml's stages as the tests read them."""

from __future__ import annotations

from pathlib import Path

import yaml


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merged(base[key], value) if both else value
    return out


def dvc_stage(work: Path) -> dict:
    """The pipeline stage of dvc.yaml generated from the DAG of ``work`` with its search in
    config/config.yaml (the tiny config and config/search.yaml merged into it)."""
    from segpipe.workflow.dvc import build_dvc_yaml, dag_summary

    config, tiny = {}, yaml.safe_load((work / "config" / "test.yaml").read_text())
    for name in ("config.yaml", "test.yaml", "search.yaml"):
        config = merged(config, yaml.safe_load((work / "config" / name).read_text()))
    config["train"]["augment"] = tiny["train"]["augment"]  # replaced whole, as Snakemake does
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    outputs = [row["output_file"] for row in dag_summary(work)]
    return build_dvc_yaml(outputs)["stages"]["pipeline"]
