"""The rungs of a successive-halving search: each candidate's score at a rung's budget, who
goes on (rule search_rung), and the winner across the brackets (rule search_select).

A rung's file, ``results/search/bracket<b>/rung<r>.csv``, lists every candidate the rung
trained, in declared order: ``candidate``, ``bracket``, ``rung``, ``epochs`` (the rung's
cumulative budget), ``val_miou`` (the best validation mIoU of the epochs up to the budget, the
epoch its best checkpoint holds; NaN without one) and ``promoted`` (``yes``/``no``). The top
ceil(n / eta) go on (:func:`promote`); in a bracket's last rung ``yes`` marks the bracket's best
alone. ``results/search/winner.csv`` (:data:`SELECTION_COLUMNS`) lists each bracket's best and
marks the best of them the winner (:func:`write_selection`), whose last rung becomes its run's
training (:func:`publish_winner`, rule search_winner). Torch-free.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segpipe.evaluation.selection import ranked
from segpipe.io import copy_file, write_csv
from segpipe.logs import UserError

logger = logging.getLogger(__name__)
COLUMNS = ["candidate", "bracket", "rung", "epochs", "val_miou", "promoted"]
SELECTION_COLUMNS = ["bracket", "candidate", "epochs", "val_miou", "winner"]


class RungError(UserError, ValueError):
    """A rung's inputs do not fit: a history without the rung's epochs, a file unreadable."""


def promote(scores: Sequence[tuple[str, float]], keep: int) -> list[str]:
    """The ``keep`` best names by score (validation mIoU), in declared order. Equal scores go
    to the first declared; a NaN score (no validation score) ranks below every number, NaNs
    among themselves in declared order."""
    names = [name for name, _ in scores]
    if len(set(names)) != len(names):
        raise ValueError(f"a candidate is scored twice: {names}")
    best = set(ranked(scores)[:keep])
    return [name for name in names if name in best]


def rung_score(history_csv: str | os.PathLike, epochs: int) -> float:
    """The best validation mIoU of a candidate's epochs 1..``epochs`` (its history, cumulative
    over the rungs it trained); raises :class:`RungError` when the history stops short."""
    try:
        history = pd.read_csv(history_csv)
        done = history.loc[history["epoch"] <= epochs]
    except (OSError, ValueError, KeyError) as exc:
        raise RungError(f"{history_csv}: not a training history ({exc})") from exc
    if len(done) != epochs or list(done["epoch"]) != list(range(1, epochs + 1)):
        raise RungError(f"{history_csv}: expected epochs 1..{epochs}, found {list(done['epoch'])}")
    scores = done["val_miou"].dropna()
    return float(scores.max()) if len(scores) else math.nan


def write_rung(
    out_csv: str | os.PathLike,
    *,
    rung: int,
    epochs: int,
    candidates: Sequence[str],
    bracket: int = 0,
    histories: Sequence[str | os.PathLike],
    eta: int,
    last: bool,
) -> list[str]:
    """Score the rung's candidates (in declared order, each with its history) at ``epochs``,
    promote the top ceil(n / eta) (the best one alone in the ``last`` rung: the winner), write
    the rung's file (of bracket ``bracket``); returns the promoted names."""
    if not candidates or len(candidates) != len(histories):
        raise RungError(f"{out_csv}: {len(candidates)} candidates, {len(histories)} histories")
    scores = [(name, rung_score(h, epochs)) for name, h in zip(candidates, histories, strict=True)]
    keep = 1 if last else math.ceil(len(scores) / eta)
    promoted = promote(scores, keep)
    rows = [
        [name, bracket, rung, epochs, score, "yes" if name in promoted else "no"]
        for name, score in scores
    ]
    write_csv(out_csv, pd.DataFrame(rows, columns=COLUMNS))
    return promoted


def read_promoted(rung_csv: str | os.PathLike) -> list[str]:
    """The candidates a rung's file promotes, in declared order (a bracket's last rung: its
    best)."""
    table = pd.read_csv(rung_csv, dtype={"candidate": str, "promoted": str})
    return table.loc[table["promoted"] == "yes", "candidate"].tolist()


def write_selection(out_csv: str | os.PathLike, last_rungs: Sequence[str | os.PathLike]) -> str:
    """Each bracket's best (the promoted row of its last rung's file, ``last_rungs`` in bracket
    order) and the winner among them by validation mIoU (ties and NaN as in :func:`promote`:
    the first bracket's first), written to ``out_csv``; returns the winner."""
    rows = []
    for path in last_rungs:
        table = pd.read_csv(path, dtype={"candidate": str, "promoted": str})
        best = table.loc[table["promoted"] == "yes"]
        if len(best) != 1 or not set(COLUMNS) <= set(table.columns):
            raise RungError(f"{path}: a last rung marks one best candidate, found {len(best)}")
        row = best.iloc[0]
        rows.append([int(row["bracket"]), row["candidate"], int(row["epochs"]), row["val_miou"]])
    if not rows:
        raise RungError(f"{out_csv}: no bracket to select from")
    scores = [(str(index), float(row[3])) for index, row in enumerate(rows)]
    (chosen,) = promote(scores, 1)
    table = pd.DataFrame(
        [[*row, "yes" if str(i) == chosen else "no"] for i, row in enumerate(rows)],
        columns=SELECTION_COLUMNS,
    )
    write_csv(out_csv, table)
    return rows[int(chosen)][1]


def read_winner(selection_csv: str | os.PathLike) -> str:
    """The winner a selection file (:func:`write_selection`) marks."""
    table = pd.read_csv(selection_csv, dtype={"candidate": str, "winner": str})
    (winner,) = table.loc[table["winner"] == "yes", "candidate"]
    return winner


def publish_winner(
    sources: Sequence[str | os.PathLike], outputs: Sequence[str | os.PathLike]
) -> None:
    """Copy the winner's last-rung files (best.pt, last.pt, history.csv, model.json) to its
    run's train outputs, each atomically."""
    for source, output in zip(sources, outputs, strict=True):
        copy_file(source, output)
    logger.info("published %s as %s", Path(sources[0]).parent, Path(outputs[0]).parent)
