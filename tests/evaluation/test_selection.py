"""Which run a comparison selects: val mIoU or the folds' mean, ties to the first declared, a run
without a score last, and scores that are missing in every way a metrics file can say so."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.evaluation.selection import number, rank_key, selected_run, validation_score


@pytest.mark.parametrize(
    "value, expected",
    [(0.5, 0.5), (1, 1.0), (np.float32(0.25), 0.25), (None, None), (math.nan, None)]
    + [(True, None), ("0.5", None), ({"mean": 0.5}, None)],
)
def test_number_is_a_float_or_none(value, expected) -> None:
    assert number(value) == expected


def test_rank_key_puts_the_best_first_and_no_score_last() -> None:
    assert sorted([0.2, None, 0.9, 0.0], key=rank_key) == [0.9, 0.2, 0.0, None]


@pytest.mark.parametrize(
    "scores, selected",
    [
        ({"a": 0.5, "b": 0.7}, "b"),
        ({"a": 0.7, "b": 0.7}, "a"),  # a tie: the first declared
        ({"b": 0.7, "a": 0.7}, "b"),
        ({"a": None, "b": 0.0}, "b"),  # a zero score beats none
        ({"a": None, "b": None}, "a"),
    ],
)
def test_selected_run(scores, selected) -> None:
    assert selected_run(scores) == selected


def test_validation_score_reads_val_or_the_folds_mean(tmp_path) -> None:
    val = tmp_path / "val.json"
    val.write_text(json.dumps({"mean_iou": 0.6}))
    cv = tmp_path / "crossval.json"
    cv.write_text(json.dumps({"val": {"mean_iou": {"mean": 0.7, "std": 0.1}}}))
    assert validation_score(val) == 0.6
    assert validation_score(val, cv) == 0.7
    for text in ('{"mean_iou": null}', '{"mean_iou": NaN}', "{}"):
        val.write_text(text)
        assert validation_score(val) is None
    cv.write_text('{"val": null}')
    assert validation_score(val, cv) is None


def test_a_nan_score_ranks_last_as_a_missing_one_does() -> None:
    from segpipe.evaluation.selection import ranked

    assert rank_key(math.nan) == rank_key(None)
    assert ranked([("a", math.nan), ("b", 0.1), ("c", None), ("d", 0.1)]) == ["b", "d", "a", "c"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.just(math.nan), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
        min_size=1,
        max_size=8,
    ),
    st.integers(1, 8),
)
def test_the_comparison_and_the_search_rank_alike(values, keep) -> None:
    """selected_run (the comparison) and promote (the search) are one ranking: the run selected
    is the one candidate a promotion of one keeps, and a promotion of ``keep`` keeps the best."""
    from segpipe.evaluation.rungs import promote
    from segpipe.evaluation.selection import ranked

    names = [f"r{i}" for i in range(len(values))]
    scores = dict(zip(names, values, strict=True))
    as_search = [(n, math.nan if v is None else v) for n, v in scores.items()]
    assert promote(as_search, 1) == [selected_run(scores)]
    kept = promote(as_search, keep)
    assert kept == [n for n in names if n in ranked(list(scores.items()))[:keep]]
