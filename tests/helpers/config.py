"""A config as validation resolves it."""

from __future__ import annotations

from typing import Any

from segpipe.workflow.config import load_schema

from helpers.repo import REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def resolve(node: dict) -> dict:
    while "$ref" in node:
        target: Any = SCHEMA
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node
