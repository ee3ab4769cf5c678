"""The rungs of a successive-halving search: each candidate's score at a rung's budget, and who
goes on (rule search_rung).

A rung's file, ``results/search/rung<r>.csv``, lists every candidate the rung trained, in
declared order: ``candidate``, ``rung``, ``epochs`` (the rung's cumulative budget),
``val_miou`` (the best validation mIoU of the epochs up to the budget, the epoch its best
checkpoint holds; NaN without one) and ``promoted`` (``yes``/``no``). The top ceil(n / eta) go
on (:func:`promote`); in the last rung ``yes`` marks the winner alone, whose last rung becomes
its run's training (:func:`publish_winner`, rule search_winner). Torch-free.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from segpipe.io import atomic_path, write_csv
from segpipe.logs import UserError

logger = logging.getLogger(__name__)
COLUMNS = ["candidate", "rung", "epochs", "val_miou", "promoted"]


class RungError(UserError, ValueError):
    """A rung's inputs do not fit: a history without the rung's epochs, a file unreadable."""


def promote(scores: Sequence[tuple[str, float]], keep: int) -> list[str]:
    """The ``keep`` best names by score (validation mIoU), in declared order. Equal scores go
    to the first declared; a NaN score (no validation score) ranks below every number, NaNs
    among themselves in declared order."""
    names = [name for name, _ in scores]
    if len(set(names)) != len(names):
        raise ValueError(f"a candidate is scored twice: {names}")

    def rank(item: tuple[int, tuple[str, float]]) -> tuple[bool, float, int]:
        index, (_, score) = item
        missing = math.isnan(score)
        return (missing, 0.0 if missing else -score, index)

    best = sorted(enumerate(scores), key=rank)[:keep]
    return [name for _, (name, _) in sorted(best)]


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
    histories: Sequence[str | os.PathLike],
    eta: int,
    last: bool,
) -> list[str]:
    """Score the rung's candidates (in declared order, each with its history) at ``epochs``,
    promote the top ceil(n / eta) (the best one alone in the ``last`` rung: the winner), write
    the rung's file; returns the promoted names."""
    if not candidates or len(candidates) != len(histories):
        raise RungError(f"{out_csv}: {len(candidates)} candidates, {len(histories)} histories")
    scores = [(name, rung_score(h, epochs)) for name, h in zip(candidates, histories, strict=True)]
    keep = 1 if last else math.ceil(len(scores) / eta)
    promoted = promote(scores, keep)
    rows = [
        [name, rung, epochs, score, "yes" if name in promoted else "no"] for name, score in scores
    ]
    write_csv(out_csv, pd.DataFrame(rows, columns=COLUMNS))
    return promoted


def read_promoted(rung_csv: str | os.PathLike) -> list[str]:
    """The candidates a rung's file promotes, in declared order (the last rung's: the winner)."""
    table = pd.read_csv(rung_csv, dtype={"candidate": str, "promoted": str})
    return table.loc[table["promoted"] == "yes", "candidate"].tolist()


def publish_winner(
    sources: Sequence[str | os.PathLike], outputs: Sequence[str | os.PathLike]
) -> None:
    """Copy the winner's last-rung files (best.pt, last.pt, history.csv, model.json) to its
    run's train outputs, each atomically."""
    for source, output in zip(sources, outputs, strict=True):
        with atomic_path(output) as tmp:
            shutil.copyfile(source, tmp)
    logger.info("published %s as %s", Path(sources[0]).parent, Path(outputs[0]).parent)
