"""A search's rungs: who is promoted (ties, NaN), each candidate's score at the rung's budget,
the rung's file, histories that do not fit, and the winner across the brackets."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.evaluation.rungs import (
    RungError,
    promote,
    read_promoted,
    read_winner,
    rung_score,
    write_rung,
    write_selection,
)


def test_promote_keeps_the_best_in_declared_order() -> None:
    scores = [("a", 0.1), ("b", 0.9), ("c", 0.5), ("d", 0.8), ("e", 0.2), ("f", 0.3)]
    assert promote(scores, 2) == ["b", "d"]  # ceil(6 / 3)
    assert promote(scores, 3) == ["b", "c", "d"]  # ceil(6 / 2)


def test_promote_ties_go_to_the_first_declared_and_nan_ranks_last() -> None:
    nan = float("nan")
    assert promote([("a", 0.5), ("b", 0.7), ("c", 0.7)], 1) == ["b"]
    assert promote([("a", nan), ("b", 0.0), ("c", nan)], 1) == ["b"]
    assert promote([("a", nan), ("b", nan), ("c", nan)], 2) == ["a", "b"]
    assert promote([], 1) == []
    with pytest.raises(ValueError, match="scored twice"):
        promote([("a", 0.1), ("a", 0.2)], 2)


scores_st = st.lists(
    st.one_of(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.floats(0, 1), st.just(math.nan)),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(scores_st, st.integers(2, 5))
def test_promote_for_any_scores(values: list[float], eta: int) -> None:
    scores = [(f"c{i}", v) for i, v in enumerate(values)]
    kept = promote(scores, math.ceil(len(values) / eta))
    assert len(kept) == math.ceil(len(values) / eta)
    assert kept == sorted(kept, key=lambda name: int(name[1:]))  # declared order
    index = {name: i for i, name in enumerate(n for n, _ in scores)}
    for name, value in scores:
        if name in kept:
            continue
        # Every candidate left out ranks below every one kept: a lower score, NaN, or an equal
        # score declared later.
        for other in kept:
            theirs = values[index[other]]
            if math.isnan(theirs):
                assert math.isnan(value) and index[other] < index[name]
            elif not math.isnan(value):
                assert value < theirs or (value == theirs and index[other] < index[name])


def history(path, scores: list[float]):
    """A training history with one row per epoch and these validation mIoUs."""
    n = len(scores)
    pd.DataFrame(
        {
            "epoch": range(1, n + 1),
            "train_loss": [1.0] * n,
            "val_loss": [1.0] * n,
            "val_miou": scores,
            "val_dice": scores,
            "lr": [0.001] * n,
        }
    ).to_csv(path, index=False)
    return path


def test_a_rung_scores_each_candidate_at_its_budget_and_promotes_the_best(tmp_path) -> None:
    # c's best epoch comes after the budget of rung 0: it does not count there.
    histories = [
        history(tmp_path / "a.csv", [0.2, 0.5, 0.4]),
        history(tmp_path / "b.csv", [0.6, 0.1, 0.1]),
        history(tmp_path / "c.csv", [0.1, 0.3, 0.9]),
    ]
    out = tmp_path / "rung0.csv"
    promoted = write_rung(
        out, rung=0, epochs=2, candidates=["a", "b", "c"], histories=histories, eta=2, last=False
    )
    assert promoted == ["a", "b"] == read_promoted(out)
    table = pd.read_csv(out)
    assert list(table.columns) == ["candidate", "bracket", "rung", "epochs", "val_miou", "promoted"]
    assert table["bracket"].tolist() == [0, 0, 0]
    assert table["val_miou"].tolist() == [0.5, 0.6, 0.3]
    assert table["epochs"].tolist() == [2, 2, 2] and table["promoted"].tolist() == [
        "yes",
        "yes",
        "no",
    ]
    last = tmp_path / "rung1.csv"
    assert write_rung(
        last, rung=1, epochs=3, candidates=["a", "c"], histories=histories[::2], eta=2, last=True
    ) == ["c"]  # the last rung promotes the winner alone
    assert read_promoted(last) == ["c"]


def test_a_history_that_stops_short_of_the_budget_is_named(tmp_path) -> None:
    short = history(tmp_path / "short.csv", [0.2])
    with pytest.raises(RungError, match=r"short\.csv: expected epochs 1\.\.2, found \[1\]"):
        rung_score(short, 2)
    (tmp_path / "bad.csv").write_text("not,a\nhistory,file\n")
    with pytest.raises(RungError, match="bad.csv: not a training history"):
        rung_score(tmp_path / "bad.csv", 1)
    assert math.isnan(rung_score(history(tmp_path / "nan.csv", [math.nan]), 1))


def last_rung(path, bracket: int, scores: dict[str, float], best: str):
    """A bracket's last rung file at 9 epochs: these scores, ``best`` promoted."""
    rows = [[c, bracket, 2, 9, v, "yes" if c == best else "no"] for c, v in scores.items()]
    columns = ["candidate", "bracket", "rung", "epochs", "val_miou", "promoted"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def test_the_winner_is_the_best_of_the_brackets_last_rungs(tmp_path) -> None:
    lasts = [
        last_rung(tmp_path / "b0.csv", 0, {"a": 0.6}, "a"),
        last_rung(tmp_path / "b1.csv", 1, {"b": 0.7, "c": 0.5}, "b"),
        last_rung(tmp_path / "b2.csv", 2, {"a": 0.6, "d": 0.4}, "a"),
    ]
    out = tmp_path / "winner.csv"
    assert write_selection(out, lasts) == "b" == read_winner(out)
    table = pd.read_csv(out)
    assert list(table.columns) == ["bracket", "candidate", "epochs", "val_miou", "winner"]
    assert table.values.tolist() == [
        [0, "a", 9, 0.6, "no"],
        [1, "b", 9, 0.7, "yes"],
        [2, "a", 9, 0.6, "no"],
    ]


def test_equal_brackets_go_to_the_first_and_nan_ranks_last(tmp_path) -> None:
    nan = float("nan")
    lasts = [
        last_rung(tmp_path / "b0.csv", 0, {"a": nan}, "a"),
        last_rung(tmp_path / "b1.csv", 1, {"b": 0.5}, "b"),
        last_rung(tmp_path / "b2.csv", 2, {"c": 0.5}, "c"),
    ]
    assert write_selection(tmp_path / "w.csv", lasts) == "b"
    assert write_selection(tmp_path / "one.csv", lasts[:1]) == "a"  # one bracket: its best


@pytest.mark.parametrize("marks", [[], ["a", "b"]])
def test_a_last_rung_without_one_best_is_named(tmp_path, marks) -> None:
    path = tmp_path / "b0.csv"
    last_rung(path, 0, {"a": 0.5, "b": 0.6}, "x")
    table = pd.read_csv(path)
    table["promoted"] = ["yes" if c in marks else "no" for c in table["candidate"]]
    table.to_csv(path, index=False)
    with pytest.raises(
        RungError, match=rf"b0\.csv: a last rung marks one best candidate, found {len(marks)}"
    ):
        write_selection(tmp_path / "w.csv", [path])
    assert not (tmp_path / "w.csv").exists()
