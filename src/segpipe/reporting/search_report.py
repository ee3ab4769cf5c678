"""Report of a successive-halving search and its Hyperband brackets: which candidates each rung
of each bracket trained and promoted, the winner across the brackets, and what the search cost
against training every candidate fully.

:func:`build_search_report` reads the rung tables the search wrote
(``bracket<b>/rung<r>.csv``: :data:`RUNG_COLUMNS`), the selection across the brackets
(``winner.csv``: :data:`SELECTION_COLUMNS`) and each candidate's ``history.csv``, checks that
they hold together (each rung of a bracket trains exactly the candidates the rung before
promoted, every bracket starts with all the candidates, the selection names each bracket's best
and the best of them), draws per bracket every candidate's validation mIoU per epoch up to where
the bracket stopped it (:func:`segpipe.reporting.plots.plot_search_curves`), and renders
``templates/search.html.j2`` into one self-contained HTML file (inline CSS, the figures as data
URIs).

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

from segpipe.evaluation.rungs import promote
from segpipe.io import read_table, write_text
from segpipe.logs import UserError
from segpipe.reporting import plots
from segpipe.reporting.html import data_uri, template_environment

logger = logging.getLogger(__name__)

RUNG_COLUMNS = ("candidate", "bracket", "rung", "epochs", "val_miou", "promoted")
SELECTION_COLUMNS = ("bracket", "candidate", "epochs", "val_miou", "winner")
PROMOTED = ("yes", "no")
HISTORY_COLUMNS = ("epoch", "val_miou")  # the columns of history.csv that the report reads
FIGURE = "search_curves_bracket{bracket}.png"  # one figure per bracket


class SearchReportError(UserError, ValueError):
    """A rung table or history that the report cannot use: the message names the file."""


@dataclass(frozen=True)
class Rung:
    """One rung as read from its table: its bracket, number, cumulative epoch budget, and per
    candidate (in declared order) its validation mIoU (NaN: none) and whether it was promoted."""

    path: str
    bracket: int
    rung: int
    epochs: int
    scores: dict[str, float]
    promoted: list[str]


def read_rung(path: str | os.PathLike) -> Rung:
    """One ``rung<r>.csv``; :class:`SearchReportError` naming it for a missing column, no rows,
    a repeated candidate, a ``rung`` or ``epochs`` that is not one integer, a non-number
    ``val_miou`` or a ``promoted`` other than yes/no."""
    name = str(path)
    table = _read_columns(path, RUNG_COLUMNS, ("candidate", "promoted"), "a rung table")
    if table.empty:
        raise SearchReportError(f"{name}: no candidates (an empty rung)")
    repeated = sorted(set(table["candidate"][table["candidate"].duplicated()]))
    if repeated:
        raise SearchReportError(f"{name}: candidate(s) listed twice: {repeated}")
    values = {column: _one_integer(table, column, name) for column in ("bracket", "rung", "epochs")}
    try:
        scores = table["val_miou"].astype(float)
    except (TypeError, ValueError):
        raise SearchReportError(f"{name}: val_miou holds values that are not numbers") from None
    wrong = sorted(set(table["promoted"]) - set(PROMOTED))
    if wrong:
        raise SearchReportError(f"{name}: promoted must be one of {list(PROMOTED)}, not {wrong}")
    return Rung(
        path=name,
        bracket=values["bracket"],
        rung=values["rung"],
        epochs=values["epochs"],
        scores=dict(zip(table["candidate"], scores, strict=True)),
        promoted=[
            c for c, p in zip(table["candidate"], table["promoted"], strict=True) if p == "yes"
        ],
    )


def _read_columns(
    path: str | os.PathLike, columns: Sequence[str], text: Sequence[str], what: str
) -> pd.DataFrame:
    """The table at ``path`` (``text`` columns read as text); :class:`SearchReportError`
    naming it when it lacks one of ``columns`` (the columns of ``what``)."""
    table = read_table(path, text=tuple(text))
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise SearchReportError(f"{path}: missing column(s) {missing}; {what} has {list(columns)}")
    return table


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
    """:class:`SearchReportError` naming the rung table where one bracket's rungs do not hold
    together: rung numbers and budgets not increasing, a budget over ``max_epochs``, a rung that
    does not train exactly the candidates the rung before promoted, a rung (not the last)
    promoting other than ``ceil(n / eta)`` candidates, a last rung without exactly one best."""
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
            f"{last.path}: a bracket's last rung marks its one best (promoted = yes), "
            f"found {len(last.promoted)}: {last.promoted}"
        )


def brackets_of(rungs: Sequence[Rung], eta: int, max_epochs: int) -> list[list[Rung]]:
    """The rungs (bracket by bracket, each in rung order) grouped by bracket, each bracket
    checked (:func:`check_rungs`); :class:`SearchReportError` naming the rung table where the
    brackets are not numbered 0, 1, ... in order, where a bracket's first rung does not train
    every candidate (those of bracket 0's first rung), or where a bracket's last rung has
    another budget than bracket 0's."""
    if not rungs:
        raise SearchReportError("no rung tables given")
    brackets: list[list[Rung]] = []
    for rung in rungs:
        if brackets and rung.bracket == brackets[-1][0].bracket:
            brackets[-1].append(rung)
        elif rung.bracket == len(brackets):
            brackets.append([rung])
        else:
            raise SearchReportError(
                f"{rung.path}: bracket {rung.bracket} out of order; the rung tables come "
                f"bracket by bracket, numbered from 0 ({len(brackets)} expected)"
            )
    first, last = brackets[0][0], brackets[0][-1]
    for bracket in brackets:
        check_rungs(bracket, eta, max_epochs)
        if sorted(bracket[0].scores) != sorted(first.scores):
            raise SearchReportError(
                f"{bracket[0].path}: a bracket starts with every candidate "
                f"{list(first.scores)}, found {list(bracket[0].scores)}"
            )
        if bracket[-1].epochs != last.epochs:
            raise SearchReportError(
                f"{bracket[-1].path}: the last rung of every bracket trains to the same budget, "
                f"{last.epochs} epochs in {last.path}, found {bracket[-1].epochs}"
            )
    return brackets


@dataclass(frozen=True)
class Selection:
    """The selection file as read: per bracket its best and score, and the winner's bracket."""

    path: str
    best: list[tuple[str, float]]
    bracket: int

    @property
    def winner(self) -> str:
        return self.best[self.bracket][0]


def read_selection(path: str | os.PathLike, brackets: Sequence[Sequence[Rung]]) -> Selection:
    """The selection across ``brackets``; :class:`SearchReportError` naming it for a missing
    column, rows that are not one per bracket in order, a row that is not its bracket's best
    or score, a winner that is not the one best by validation (ties to the first bracket)."""
    name = str(path)
    table = _read_columns(path, SELECTION_COLUMNS, ("candidate", "winner"), "a selection")
    expected = [(b[-1].promoted[0], b[-1].scores[b[-1].promoted[0]]) for b in brackets]
    found = list(zip(table["candidate"], table["val_miou"].astype(float), strict=True))
    if [str(b) for b in table["bracket"]] != [str(b) for b in range(len(brackets))] or [
        c for c, _ in found
    ] != [c for c, _ in expected]:
        raise SearchReportError(
            f"{name}: lists {[c for c, _ in found]}, but the brackets' last rungs mark "
            f"{[c for c, _ in expected]}"
        )
    chosen = promote([(str(i), score) for i, (_, score) in enumerate(expected)], 1)[0]
    marked = [str(i) for i, mark in enumerate(table["winner"]) if mark == "yes"]
    if marked != [chosen]:
        raise SearchReportError(
            f"{name}: marks bracket(s) {marked} the winner; the best by validation mIoU is "
            f"bracket {chosen}"
        )
    return Selection(path=name, best=expected, bracket=int(chosen))


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
    """Per candidate (in declared order), the most epochs any of ``rungs`` trained it to:
    a candidate's rung trains once whichever brackets need it."""
    budgets: dict[str, int] = {}
    for rung in rungs:
        for candidate in rung.scores:
            budgets[candidate] = max(budgets.get(candidate, 0), rung.epochs)
    return budgets


def search_cost(rungs: Sequence[Rung], max_epochs: int) -> dict[str, Any]:
    """Epochs trained in all (each candidate up to the most epochs a rung gave it) against the
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


def rung_rows(rungs: Sequence[Rung], best: str, winner: str) -> list[dict[str, Any]]:
    """One bracket's candidate table: per candidate the epochs the bracket trained it and one
    cell per rung (its val mIoU and "promoted" or "stopped here", in the last rung "winner",
    "bracket's best" (``best``, not the winner) or "not selected"; "stopped" after it left the
    race)."""
    rows = []
    for candidate, budget in last_budgets(rungs).items():
        cells: list[dict[str, Any]] = []
        for i, rung in enumerate(rungs):
            if candidate not in rung.scores:
                cells.append({"score": None, "status": "stopped", "trained": False})
                continue
            status = "promoted" if candidate in rung.promoted else "stopped here"
            if i == len(rungs) - 1:
                status = "not selected"
                if candidate == best:
                    status = "winner" if candidate == winner else "bracket's best"
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


def _bracket_context(
    number: int, rungs: Sequence[Rung], winner: str, figure: Path, max_epochs: int
) -> dict[str, Any]:
    """What the page shows of one bracket: its rungs, candidate rows, cost alone, figure."""
    return {
        "number": number,
        "first": rungs[0].epochs,
        "rungs": [
            {
                "rung": r.rung,
                "epochs": r.epochs,
                "count": len(r.scores),
                "promoted": len(r.promoted),
            }
            for r in rungs
        ],
        "rows": rung_rows(rungs, rungs[-1].promoted[0], winner),
        "best": rungs[-1].promoted[0],
        "best_miou": rungs[-1].scores[rungs[-1].promoted[0]],
        "cost": search_cost(rungs, max_epochs),
        "figure": data_uri(figure.read_bytes()),
    }


def build_search_report(
    rung_csvs: Sequence[str | os.PathLike],
    histories: Mapping[str, str | os.PathLike],
    out_html: str | os.PathLike,
    figures_dir: str | os.PathLike,
    *,
    selection_csv: str | os.PathLike,
    max_epochs: int,
    eta: int,
    title: str = "segpipe search",
    winner_report: str | None = None,
) -> None:
    """Write the search's figures (:data:`FIGURE`, one per bracket, in ``figures_dir``) and its
    HTML report.

    ``rung_csvs`` are the rung tables bracket by bracket, each bracket's in rung order,
    ``selection_csv`` the selection across the brackets, ``histories`` each candidate's
    ``history.csv`` (of the most epochs it trained), ``max_epochs`` and ``eta`` the search's
    budget; ``winner_report`` is a link (relative to the report's folder) to the winner's run
    report. Inputs that do not hold together raise :class:`SearchReportError` naming the file,
    before anything is written.
    """
    rungs = [read_rung(path) for path in rung_csvs]
    brackets = brackets_of(rungs, eta, max_epochs)
    selection = read_selection(selection_csv, brackets)
    curves = read_histories(rungs, histories)
    winner = selection.winner
    sections = []
    for number, bracket in enumerate(brackets):
        figure = Path(figures_dir) / FIGURE.format(bracket=number)
        stops = last_budgets(bracket)
        plots.plot_search_curves(
            {name: curves[name][curves[name]["epoch"] <= stop] for name, stop in stops.items()},
            figure,
            winner=bracket[-1].promoted[0],
            budgets=[rung.epochs for rung in bracket],
            title=title if len(brackets) == 1 else f"{title}: bracket {number}",
            winner_label="winner" if bracket[-1].promoted[0] == winner else "bracket's best",
        )
        sections.append(_bracket_context(number, bracket, winner, figure, max_epochs))
    context = {
        "title": title,
        "eta": eta,
        "brackets": sections,
        "candidates": len(rungs[0].scores),
        "cost": search_cost(rungs, max_epochs),
        "winner": {
            "name": winner,
            "val_miou": selection.best[selection.bracket][1],
            "bracket": selection.bracket,
            "epochs": brackets[0][-1].epochs,
            "href": winner_report,
        },
    }
    write_text(out_html, template_environment().get_template("search.html.j2").render(context))
    logger.info("wrote search report %s of %d candidates; winner %s", out_html, len(curves), winner)
