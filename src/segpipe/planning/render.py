"""The planned config as YAML with a one-line comment per planned option, and its checks.

:func:`render` writes each option on one line in flow style (``table: {0: 0, 255: 1}``) with
its comment after it, or on the line above when the two would not fit in :data:`WIDTH` columns.
:func:`check_planned` reads the text back and validates it as the pipeline does: against
config/schema.yaml, a search's budget, and layered over config/config.yaml, which must change
nothing (the planned config sets every option the base config sets).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from segpipe.workflow.config import (
    ConfigError,
    base_config,
    borrowed_options,
    merge_config,
    replace_whole_options,
    validate_config,
)
from segpipe.workflow.search import search_problems

WIDTH = 100


def flow(value: Any) -> str:
    """One value as one line of YAML (flow style: lists in [], mappings in {})."""
    text = yaml.safe_dump(
        [value], default_flow_style=True, sort_keys=False, width=10**9, allow_unicode=True
    )
    return text.strip()[1:-1]


def _line(indent: str, key: str, value: Any, why: str | None) -> list[str]:
    line = f"{indent}{key}: {flow(value)}"
    if not why:
        return [line]
    if len(line) + len(why) + 4 <= WIDTH:
        return [f"{line}  # {why}"]
    return [f"{indent}# {why}", line]


def render(config: Mapping[str, Any], comments: Mapping[str, str], header: list[str]) -> str:
    """``config``'s top-level options and sections (one level of options in each) as YAML;
    ``comments``: dotted option -> its comment; ``header``: comment lines at the top."""
    lines = [f"# {text}" if text else "#" for text in header] + [""]
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            lines.append("")
            if comments.get(key):
                lines.append(f"# {comments[key]}")
            lines.append(f"{key}:")
            for sub, item in value.items():
                lines += _line("  ", sub, item, comments.get(f"{key}.{sub}"))
            lines.append("")
        else:
            lines += _line("", key, value, comments.get(key))
    return "\n".join(_single_blanks(lines)).strip("\n") + "\n"


def _single_blanks(lines: list[str]) -> list[str]:
    """No two blank lines in a row."""
    return [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]


def check_planned(text: str, config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict:
    """The planned text's validated config: it must read back as ``config``, validate, have a
    search that can run, and be what config/config.yaml (of the working directory, when it
    exists) layered under it gives, borrowing nothing. Raises ConfigError naming the problem
    (a bug of the planner: a planned config must run as it is)."""
    read = yaml.safe_load(text)
    if read != config:
        raise ConfigError("the planned config does not read back as planned")
    validated = validate_config(read, schema)
    if validated["search"]:
        sample = validated["search"]["sample"]
        problems = search_problems(validated, [f"s{i}" for i in range(sample)])
        if problems:
            raise ConfigError("invalid planned search:\n  " + "\n  ".join(problems))
    base = base_config()
    if base:
        if problem := borrowed_options(base, read):
            raise ConfigError(problem)
        layered = replace_whole_options(merge_config(base, read), read)
        if validate_config(layered, schema) != validated:
            raise ConfigError("the planned config borrows options from config/config.yaml")
    return validated


def default_schema() -> Path:
    """config/schema.yaml of the working directory, else of the checkout the package is in."""
    here = Path("config/schema.yaml")
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[3] / "config" / "schema.yaml"
