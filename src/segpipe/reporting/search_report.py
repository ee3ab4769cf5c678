"""Report of a successive-halving search: which candidates each rung trained and promoted, what
the search cost against training every candidate fully, and the winner.

:func:`build_search_report` reads the rung tables the search wrote (``rung<r>.csv``, one per
rung: :data:`RUNG_COLUMNS`) and each candidate's ``history.csv``, checks that the rungs hold
together (each rung trains exactly the candidates the rung before promoted), draws every
candidate's validation mIoU per epoch up to where it stopped
(:func:`segpipe.reporting.plots.plot_search_curves`), and renders ``templates/search.html.j2``
into one self-contained HTML file (inline CSS, the figure as a data URI).

Inconsistent input raises :class:`SearchReportError`, one line naming the file.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from segpipe.io import read_table, write_text
from segpipe.logs import UserError
from segpipe.reporting import plots
from segpipe.reporting.html import data_uri, template_environment

logger = logging.getLogger(__name__)

RUNG_COLUMNS = ("candidate", "rung", "epochs", "val_miou", "promoted")
PROMOTED = ("yes", "no")
HISTORY_COLUMNS = ("epoch", "val_miou")  # the columns of history.csv that the report reads
FIGURE = "search_curves.png"


class SearchReportError(UserError, ValueError):
    """A rung table or history that the report cannot use: the message names the file."""


@dataclass(frozen=True)
class Rung:
    """One rung as read from its table: its number, cumulative epoch budget, and per candidate
    (in declared order) its validation mIoU (NaN: none) and whether it was promoted."""

    path: str
    rung: int
    epochs: int
    scores: dict[str, float]
    promoted: list[str]


def read_rung(path: str | os.PathLike) -> Rung:
    """One ``rung<r>.csv``; :class:`SearchReportError` naming it for a missing column, no rows,
    a repeated candidate, a ``rung`` or ``epochs`` that is not one integer, a non-number
    ``val_miou`` or a ``promoted`` other than yes/no."""
    name = str(path)
    table = read_table(path, text=("candidate", "promoted"))
    missing = [column for column in RUNG_COLUMNS if column not in table.columns]
    if missing:
        raise SearchReportError(
            f"{name}: missing column(s) {missing}; a rung table has {list(RUNG_COLUMNS)}"
        )
    if table.empty:
        raise SearchReportError(f"{name}: no candidates (an empty rung)")
    repeated = sorted(set(table["candidate"][table["candidate"].duplicated()]))
    if repeated:
        raise SearchReportError(f"{name}: candidate(s) listed twice: {repeated}")
    values = {column: _one_integer(table, column, name) for column in ("rung", "epochs")}
    try:
        scores = table["val_miou"].astype(float)
    except (TypeError, ValueError):
        raise SearchReportError(f"{name}: val_miou holds values that are not numbers") from None
    wrong = sorted(set(table["promoted"]) - set(PROMOTED))
    if wrong:
        raise SearchReportError(f"{name}: promoted must be one of {list(PROMOTED)}, not {wrong}")
    return Rung(
        path=name,
        rung=values["rung"],
        epochs=values["epochs"],
        scores=dict(zip(table["candidate"], scores, strict=True)),
        promoted=[
            c for c, p in zip(table["candidate"], table["promoted"], strict=True) if p == "yes"
        ],
    )


def _one_integer(table: pd.DataFrame, column: str, name: str) -> int:
    """The one integer value of ``column`` in every row of a rung table."""
    values = set(table[column].tolist())
    if len(values) != 1:
        raise SearchReportError(f"{name}: {column} must be the same in every row, found {values}")
    (value,) = values
    if isinstance(value, str) or not float(value).is_integer():
        raise SearchReportError(f"{name}: {column} must be an integer, not {value!r}")
    return int(value)


def check_rungs(rungs: Sequence[Rung], eta: int, max_epochs: int) -> None:
    """:class:`SearchReportError` naming the rung table where the rungs do not hold together:
    rung numbers and budgets not increasing, a budget over ``max_epochs``, a rung that does
    not train exactly the candidates the rung before promoted, a rung (not the last) promoting
    other than ``ceil(n / eta)`` candidates, a last rung without exactly one winner."""
    if not rungs:
        raise SearchReportError("no rung tables given")
    for i, rung in enumerate(rungs):
        if rung.epochs > max_epochs or rung.epochs < 1:
            raise SearchReportError(
                f"{rung.path}: budget of {rung.epochs} epochs outside 1..{max_epochs} (max_epochs)"
            )
        if i:
            _check_follows(rungs[i - 1], rung)
        expected = math.ceil(len(rung.scores) / eta)
        if i < len(rungs) - 1 and len(rung.promoted) != expected:
            raise SearchReportError(
                f"{rung.path}: promotes {len(rung.promoted)} of {len(rung.scores)} candidates, "
                f"expected ceil({len(rung.scores)} / eta={eta}) = {expected}"
            )
    last = rungs[-1]
    if len(last.promoted) != 1:
        raise SearchReportError(
            f"{last.path}: the last rung marks one winner (promoted = yes), "
            f"found {len(last.promoted)}: {last.promoted}"
        )


def _check_follows(before: Rung, rung: Rung) -> None:
    """:class:`SearchReportError` unless ``rung`` has a higher number and budget than
    ``before`` and trains exactly the candidates ``before`` promoted."""
    if rung.rung <= before.rung or rung.epochs <= before.epochs:
        raise SearchReportError(
            f"{rung.path}: rung {rung.rung} ({rung.epochs} epochs) does not follow rung "
            f"{before.rung} ({before.epochs} epochs) of {before.path}"
        )
    if sorted(rung.scores) != sorted(before.promoted):
        raise SearchReportError(
            f"{rung.path}: trains {list(rung.scores)}, but {before.path} promoted {before.promoted}"
        )


def last_budgets(rungs: Sequence[Rung]) -> dict[str, int]:
    """Per candidate (in declared order), the budget of the last rung it trained."""
    budgets: dict[str, int] = {}
    for rung in rungs:
        budgets.update(dict.fromkeys(rung.scores, rung.epochs))
    return budgets


def search_cost(rungs: Sequence[Rung], max_epochs: int) -> dict[str, Any]:
    """Epochs trained in all (each candidate up to the budget of its last rung) against the
    full grid (every candidate for ``max_epochs``), and their fraction."""
    trained = sum(last_budgets(rungs).values())
    full = len(rungs[0].scores) * max_epochs
    return {"trained": trained, "full": full, "fraction": trained / full, "max_epochs": max_epochs}


def read_histories(
    rungs: Sequence[Rung], histories: Mapping[str, str | os.PathLike]
) -> dict[str, pd.DataFrame]:
    """Each candidate's history up to the budget of its last rung; :class:`SearchReportError`
    naming the rung table of a candidate without a history, or the history file that is
    missing or lacks a column of :data:`HISTORY_COLUMNS`."""
    budgets = last_budgets(rungs)
    read = {}
    for rung in rungs:
        for candidate in rung.scores:
            if candidate not in histories:
                raise SearchReportError(
                    f"{rung.path}: candidate {candidate!r} has no history; histories are given "
                    f"for {sorted(histories)}"
                )
    for candidate, budget in budgets.items():
        path = histories[candidate]
        if not Path(path).is_file():
            raise SearchReportError(f"{path}: history of candidate {candidate!r} not found")
        history = read_table(path)
        missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
        if missing:
            raise SearchReportError(
                f"{path}: history of candidate {candidate!r} lacks column(s) {missing}"
            )
        read[candidate] = history[history["epoch"] <= budget].reset_index(drop=True)
    return read


def rung_rows(rungs: Sequence[Rung], winner: str) -> list[dict[str, Any]]:
    """The candidate table: per candidate its last budget and one cell per rung (its val mIoU
    and "promoted", "winner" or "stopped here"; "stopped" after it left the race)."""
    rows = []
    for candidate, budget in last_budgets(rungs).items():
        cells: list[dict[str, Any]] = []
        for i, rung in enumerate(rungs):
            if candidate not in rung.scores:
                cells.append({"score": None, "status": "stopped", "trained": False})
                continue
            status = "promoted" if candidate in rung.promoted else "stopped here"
            if i == len(rungs) - 1:
                status = "winner" if candidate == winner else "not selected"
            cells.append({"score": rung.scores[candidate], "status": status, "trained": True})
        rows.append(
            {
                "candidate": candidate,
                "epochs": budget,
                "cells": cells,
                "winner": candidate == winner,
            }
        )
    return rows


def build_search_report(
    rung_csvs: Sequence[str | os.PathLike],
    histories: Mapping[str, str | os.PathLike],
    out_html: str | os.PathLike,
    figures_dir: str | os.PathLike,
    *,
    max_epochs: int,
    eta: int,
    title: str = "segpipe search",
    winner_report: str | None = None,
) -> None:
    """Write the search's figure (:data:`FIGURE` in ``figures_dir``) and its HTML report.

    ``rung_csvs`` are the rung tables in rung order, ``histories`` each candidate's
    ``history.csv``, ``max_epochs`` and ``eta`` the search's budget; ``winner_report`` is a link
    (relative to the report's folder) to the winner's run report. Inputs that do not hold
    together raise :class:`SearchReportError` naming the file, before anything is written.
    """
    rungs = [read_rung(path) for path in rung_csvs]
    check_rungs(rungs, eta, max_epochs)
    curves = read_histories(rungs, histories)
    winner = rungs[-1].promoted[0]
    figure = Path(figures_dir) / FIGURE
    plots.plot_search_curves(
        curves, figure, winner=winner, budgets=[rung.epochs for rung in rungs], title=title
    )
    context = {
        "title": title,
        "eta": eta,
        "rungs": [
            {
                "rung": r.rung,
                "epochs": r.epochs,
                "count": len(r.scores),
                "promoted": len(r.promoted),
            }
            for r in rungs
        ],
        "rows": rung_rows(rungs, winner),
        "cost": search_cost(rungs, max_epochs),
        "winner": {"name": winner, "val_miou": rungs[-1].scores[winner], "href": winner_report},
        "figure": data_uri(figure.read_bytes()),
    }
    write_text(out_html, template_environment().get_template("search.html.j2").render(context))
    logger.info("wrote search report %s of %d candidates; winner %s", out_html, len(curves), winner)
