"""Tests for segpipe.reporting.search_report: the report of a successive-halving search, built
from small rung tables and synthetic histories written here (9 candidates, eta 3, budgets
1/3/9 epochs), and of a search in two Hyperband brackets over the same ladder."""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.evaluation.rungs import write_selection
from segpipe.logs import UserError
from segpipe.reporting.search_report import (
    FIGURE,
    RUNG_COLUMNS,
    SearchReportError,
    build_search_report,
)

from helpers.html import parse_tables

ETA = 3
BUDGETS = (1, 3, 9)
MAX_EPOCHS = 9
# Per candidate: validation mIoU at epoch 1 and its gain per epoch (crossing curves, so that
# the ranking changes between rungs); c7 has no score at epoch 1.
CURVES = {
    "c0": (0.30, 0.010),
    "c1": (0.50, 0.060),
    "c2": (0.10, 0.050),
    "c3": (0.60, 0.002),
    "c4": (0.20, 0.030),
    "c5": (0.45, 0.020),
    "c6": (0.55, 0.004),
    "c7": (0.05, 0.060),
    "c8": (0.40, 0.015),
}


def _history(start: float, gain: float, epochs: int, nan_first: bool) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    miou = start + gain * (epoch - 1)
    if nan_first:
        miou[0] = np.nan
    return pd.DataFrame(
        {
            "epoch": epoch,
            "train_loss": 1 / epoch,
            "val_loss": 1.1 / epoch,
            "val_miou": miou,
            "val_dice": miou + 0.05,
            "lr": 0.01,
        }
    )


def _promote(scores: dict[str, float], count: int) -> list[str]:
    """The ``count`` best by score (NaN last, ties in declared order)."""
    order = sorted(scores, key=lambda c: (math.isnan(scores[c]), -np.nan_to_num(scores[c])))
    return order[:count]


def _frames(curves: dict[str, tuple[float, float]]) -> dict[str, pd.DataFrame]:
    return {
        name: _history(start, gain, MAX_EPOCHS, name == "c7")
        for name, (start, gain) in curves.items()
    }


def _bracket(root: Path, frames, bracket: int) -> tuple[list[Path], list[dict]]:
    """Write the rung tables of bracket ``bracket`` (rungs bracket.. of BUDGETS) over the
    candidates of ``frames``; return their paths and what each rung did ({epochs, scores,
    promoted})."""
    alive, rungs, paths = list(frames), [], []
    for r in range(bracket, len(BUDGETS)):
        budget = BUDGETS[r]
        scores = {c: float(frames[c]["val_miou"][:budget].max()) for c in alive}
        last = r == len(BUDGETS) - 1
        promoted = _promote(scores, 1 if last else math.ceil(len(alive) / ETA))
        rows = [
            {
                "candidate": c,
                "bracket": bracket,
                "rung": r,
                "epochs": budget,
                "val_miou": scores[c],
                "promoted": "yes" if c in promoted else "no",
            }
            for c in alive
        ]
        paths.append(root / f"bracket{bracket}" / f"rung{r}.csv")
        paths[-1].parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=list(RUNG_COLUMNS)).to_csv(paths[-1], index=False)
        rungs.append({"epochs": budget, "scores": scores, "promoted": promoted})
        alive = [c for c in alive if c in promoted]
    return paths, rungs


def _write_histories(root: Path, frames, rungs: list[dict]) -> dict[str, Path]:
    histories = {}
    for name, frame in frames.items():
        stop = max(rung["epochs"] for rung in rungs if name in rung["scores"])
        histories[name] = root / "runs" / name / "history.csv"
        histories[name].parent.mkdir(parents=True)
        frame[frame["epoch"] <= stop].to_csv(histories[name], index=False)
    return histories


def _search(
    root: Path, brackets: int = 1, curves: dict[str, tuple[float, float]] = CURVES
) -> tuple[list[Path], dict[str, Path], list[dict]]:
    """Write the histories, rung tables and selection of a search over ``curves`` in
    ``brackets`` brackets; return the rung paths, the histories and what each rung did
    ({epochs, scores, promoted}), bracket by bracket (the selection is root/winner.csv)."""
    frames = _frames(curves)
    paths, rungs, lasts = [], [], []
    for bracket in range(brackets):
        bracket_paths, bracket_rungs = _bracket(root, frames, bracket)
        paths += bracket_paths
        rungs += bracket_rungs
        lasts.append(bracket_paths[-1])
    write_selection(root / "winner.csv", lasts)
    return paths, _write_histories(root, frames, rungs), rungs


@pytest.fixture
def search(tmp_path: Path) -> tuple[list[Path], dict[str, Path], list[dict]]:
    return _search(tmp_path)


def _build(tmp_path: Path, rung_csvs, histories, **options) -> str:
    """The report of the rung tables; the selection is winner.csv beside the first bracket's
    folder unless given."""
    out = tmp_path / "search"
    selection = Path(rung_csvs[0]).parent.parent / "winner.csv" if rung_csvs else "none.csv"
    build_search_report(
        rung_csvs,
        histories,
        out / "report.html",
        out / "figures",
        **{"selection_csv": selection, "max_epochs": MAX_EPOCHS, "eta": ETA, **options},
    )
    return (out / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str, list[dict]]:
    """The report of the search over CURVES, built once (with a link to the winner's report)."""
    root = tmp_path_factory.mktemp("search")
    paths, histories, rungs = _search(root)
    html = _build(root, paths, histories, winner_report="../runs/winner/report.html")
    return root, html, rungs


def test_the_synthetic_search_changes_its_ranking_between_rungs(built):
    """A guard on the data: the winner is not the rung-0 leader, so the table checks something."""
    rungs = built[2]
    assert [len(rung["scores"]) for rung in rungs] == [9, 3, 1]
    assert rungs[0]["promoted"][0] != rungs[-1]["promoted"][0]
    assert math.isnan(rungs[0]["scores"]["c7"])


def test_rung_summary_rows(built):
    table = parse_tables(built[1]).tables["rung-summary-0"]

    assert table[0] == ["Rung", "Budget (epochs)", "Candidates", "Promoted"]
    expected = [
        [str(r), str(rung["epochs"]), str(len(rung["scores"])), str(len(rung["promoted"]))]
        for r, rung in enumerate(built[2])
    ]
    expected[-1][-1] = "winner"
    assert table[1:] == expected


def test_candidate_rows_show_scores_promotions_stops_and_the_winner(built):
    parsed = parse_tables(built[1])
    table = parsed.tables["candidates-0"]
    rungs = built[2]
    winner = rungs[-1]["promoted"][0]

    assert table[0][:2] == ["Candidate", "Trained (epochs)"]
    assert table[0][2:] == [
        f"Rung {r} ({b} epoch{'s' if b != 1 else ''}): val mIoU" for r, b in enumerate(BUDGETS)
    ]
    assert table[0][2] == "Rung 0 (1 epoch): val mIoU"
    expected = []
    for name in CURVES:
        trained = [rung for rung in rungs if name in rung["scores"]]
        cells = []
        for i, rung in enumerate(rungs):
            if name not in rung["scores"]:
                cells.append("stopped")
                continue
            score = rung["scores"][name]
            if i == len(rungs) - 1:
                status = "winner" if name == winner else "not selected"
            else:
                status = "promoted" if name in rung["promoted"] else "stopped here"
            cells.append(("n/a" if math.isnan(score) else f"{score:.3f}") + " " + status)
        label = f"{name} winner" if name == winner else name
        expected.append([label, str(trained[-1]["epochs"]), *cells])
    assert table[1:] == expected
    assert parsed.row_classes["candidates-0"][1:] == [
        "selected" if name == winner else None for name in CURVES
    ]
    assert "n/a stopped here" in table[1 + list(CURVES).index("c7")]


def test_cost_counts_each_candidate_up_to_its_last_rung(built):
    rungs = built[2]
    trained = sum(
        max(rung["epochs"] for rung in rungs if name in rung["scores"]) for name in CURVES
    )
    assert trained == 6 * 1 + 2 * 3 + 1 * 9  # the shape of a 9/3/1 search with budgets 1/3/9
    table = dict(parse_tables(built[1]).tables["cost"])

    assert table["Epochs trained"] == str(trained)
    assert table[f"Full grid ({len(CURVES)} candidates × {MAX_EPOCHS} epochs)"] == str(
        len(CURVES) * MAX_EPOCHS
    )
    assert table["Fraction of the full grid"] == f"{trained / (len(CURVES) * MAX_EPOCHS):.1%}"


def test_winner_is_named_with_a_link_to_its_report(built, search, tmp_path):
    winner = built[2][-1]["promoted"][0]
    paragraph = re.search(r'<p id="winner">(.*?)</p>', built[1], re.S).group(1)

    assert f"<strong>{winner}</strong>" in paragraph
    assert f"{built[2][-1]['scores'][winner]:.3f}" in paragraph
    assert '<a href="../runs/winner/report.html">' in paragraph
    without = re.search(r'<p id="winner">(.*?)</p>', _build(tmp_path, *search[:2]), re.S)
    assert f"<strong>{winner}</strong>" in without.group(1) and "<a " not in without.group(1)


def test_figure_is_inlined_and_saved(search, tmp_path):
    html = _build(tmp_path, *search[:2])
    saved = tmp_path / "search" / "figures" / FIGURE.format(bracket=0)

    sources = re.findall(r'<img[^>]* src="([^"]+)"', html)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].partition(",")[2]) == saved.read_bytes()
    with Image.open(io.BytesIO(saved.read_bytes())) as image:
        assert image.format == "PNG" and image.width > 100
    assert "<script" not in html and "http" not in html  # self-contained


def test_a_name_is_escaped_in_the_page(tmp_path):
    """Candidate names are data: one with markup in it is shown as text."""
    paths, histories, rungs = _search(tmp_path)
    odd = "<b>c3&</b>"
    for path in paths:
        table = pd.read_csv(path)
        table["candidate"] = table["candidate"].replace("c3", odd)
        table.to_csv(path, index=False)
    histories[odd] = histories.pop("c3")
    html = _build(tmp_path, paths, histories)

    assert "<b>c3" not in html and "&lt;b&gt;c3&amp;&lt;/b&gt;" in html


def _drop_column(column):
    def change(table: pd.DataFrame) -> pd.DataFrame:
        return table.drop(columns=column)

    return change


BAD_RUNGS = {  # what is done to rung 1's table -> a phrase of the error
    **{f"no {c}": (_drop_column(c), f"missing column(s) ['{c}']") for c in RUNG_COLUMNS},
    "empty": (lambda t: t.iloc[:0], "no candidates"),
    "repeated candidate": (lambda t: pd.concat([t, t.iloc[:1]]), "listed twice"),
    "two budgets": (lambda t: t.assign(epochs=[3, 4, 3]), "epochs must be the same"),
    "fractional budget": (lambda t: t.assign(epochs=2.5), "epochs must be an integer"),
    "text budget": (lambda t: t.assign(epochs="three"), "epochs must be an integer"),
    "text score": (lambda t: t.assign(val_miou="high"), "val_miou holds values"),
    "promoted maybe": (lambda t: t.assign(promoted="maybe"), "promoted must be one of"),
    "promotes two": (lambda t: t.assign(promoted=["yes", "yes", "no"]), "promotes 2 of 3"),
    "not the promoted": (lambda t: t.iloc[:2], "but"),
    "budget not growing": (lambda t: t.assign(epochs=1), "does not follow"),
    "budget over max": (lambda t: t.assign(epochs=10), "outside 1..9"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNGS))
def test_a_bad_rung_table_is_refused_naming_it(case, search, tmp_path):
    paths, histories, _ = search
    change, phrase = BAD_RUNGS[case]
    change(pd.read_csv(paths[1])).to_csv(paths[1], index=False)

    with pytest.raises(SearchReportError) as error:
        _build(tmp_path, paths, histories)
    message = str(error.value)
    assert message.startswith(f"{paths[1]}: ")
    assert phrase in message and "\n" not in message
    assert isinstance(error.value, UserError) and isinstance(error.value, ValueError)
    assert not (tmp_path / "search").exists()  # nothing written


@pytest.mark.parametrize("marks", [["no", "no", "no"], ["yes", "yes", "no"]])
def test_a_last_rung_without_one_winner_is_refused(marks, search, tmp_path):
    """A search cut after rung 1 (three candidates): its last rung must mark one winner."""
    paths, histories, _ = search
    pd.read_csv(paths[1]).assign(promoted=marks).to_csv(paths[1], index=False)

    with pytest.raises(SearchReportError) as error:
        _build(tmp_path, paths[:2], histories)
    winners = marks.count("yes")
    assert str(error.value).startswith(f"{paths[1]}: a bracket's last rung marks its one best")
    assert f"found {winners}" in str(error.value)


def test_a_candidate_without_a_history_is_refused_naming_the_rung(search, tmp_path):
    paths, histories, rungs = search
    winner = rungs[-1]["promoted"][0]
    del histories[winner]

    with pytest.raises(SearchReportError) as error:
        _build(tmp_path, paths, histories)
    assert str(error.value).startswith(f"{paths[0]}: candidate {winner!r} has no history")


def test_a_missing_or_incomplete_history_file_is_refused_naming_it(search, tmp_path):
    paths, histories, _ = search
    histories["c4"].unlink()
    with pytest.raises(SearchReportError, match=f"^{re.escape(str(histories['c4']))}: .*not found"):
        _build(tmp_path, paths, histories)

    pd.DataFrame({"epoch": [1], "val_loss": [0.3]}).to_csv(histories["c4"], index=False)
    with pytest.raises(SearchReportError, match=r"lacks column\(s\) \['val_miou'\]"):
        _build(tmp_path, paths, histories)
    assert not (tmp_path / "search").exists()


def test_no_rung_tables_is_refused(search, tmp_path):
    with pytest.raises(SearchReportError, match="no rung tables"):
        _build(tmp_path, [], search[1])


def test_a_history_longer_than_the_last_budget_is_cut_there(search, tmp_path, monkeypatch):
    """A stopped candidate's curve ends at its last rung's budget even if its history goes on."""
    paths, histories, rungs = search
    stopped = next(name for name in CURVES if name not in rungs[1]["scores"])
    _history(*CURVES[stopped], MAX_EPOCHS, False).to_csv(histories[stopped], index=False)
    drawn = {}

    from segpipe.reporting import plots

    original = plots.plot_search_curves

    def spy(curves, path, **options):
        drawn.update(curves)
        original(curves, path, **options)

    monkeypatch.setattr(plots, "plot_search_curves", spy)
    _build(tmp_path, paths, histories)
    assert drawn[stopped]["epoch"].tolist() == [1]
    assert drawn[rungs[-1]["promoted"][0]]["epoch"].tolist() == list(range(1, MAX_EPOCHS + 1))


# --- two brackets over the ladder 1/3/9: bracket 0 from rung 0, bracket 1 from rung 1 ---------

# Three flat candidates lead after 1 epoch; "late" starts last and leads from epoch 3 on, so
# bracket 0 stops it at rung 0 and bracket 1 finds it.
TWO = {
    "flat1": (0.30, 0.0),
    "flat2": (0.29, 0.0),
    "flat3": (0.28, 0.0),
    "late": (0.10, 0.11),
    **{f"low{i}": (0.05 + 0.01 * i, 0.005) for i in range(5)},
}


@pytest.fixture(scope="module")
def two(tmp_path_factory) -> tuple[Path, str, list[dict], list[Path]]:
    root = tmp_path_factory.mktemp("brackets")
    paths, histories, rungs = _search(root, brackets=2, curves=TWO)
    return root, _build(root, paths, histories), rungs, paths


def test_two_brackets_each_get_a_section_and_the_best_of_their_last_rungs_wins(two):
    root, html, rungs, _ = two
    parsed = parse_tables(html)
    bracket0, bracket1 = rungs[:3], rungs[3:]
    assert [len(r["scores"]) for r in bracket0] == [9, 3, 1]
    assert [len(r["scores"]) for r in bracket1] == [9, 3]  # 9 candidates at 3, then 3 at 9
    bests = [bracket0[-1]["promoted"][0], bracket1[-1]["promoted"][0]]
    scores = [bracket0[-1]["scores"][bests[0]], bracket1[-1]["scores"][bests[1]]]
    winner = bests[int(scores[1] > scores[0])]
    assert bests == ["flat1", "late"] and winner == "late"  # a guard on the data

    assert parsed.tables["selection"][0] == [
        "Bracket", "First rung (epochs)", "Bracket's best", "Val mIoU at 9 epochs"
    ]  # fmt: skip
    assert [row[:3] for row in parsed.tables["selection"][1:]] == [
        ["0", "1", bests[0] + (" winner" if bests[0] == winner else "")],
        ["1", "3", bests[1] + (" winner" if bests[1] == winner else "")],
    ]
    assert [row[:2] for row in parsed.tables["rung-summary-1"][1:]] == [["1", "3"], ["2", "9"]]
    assert parsed.tables["candidates-1"][0][2:] == [
        "Rung 1 (3 epochs): val mIoU",
        "Rung 2 (9 epochs): val mIoU",
    ]
    cell = {row[0].removesuffix(" winner"): row[-1] for row in parsed.tables["candidates-0"][1:]}
    assert cell[bests[0]].endswith("winner" if bests[0] == winner else "bracket's best")
    assert f"<strong>{winner}</strong>" in html and "bracket 1)" in html
    assert 'id="bracket-0"' in html and 'id="bracket-1"' in html
    figures = sorted(p.name for p in (root / "search" / "figures").iterdir())
    assert figures == [FIGURE.format(bracket=0), FIGURE.format(bracket=1)]
    assert len(re.findall(r'<img[^>]* src="data:image/png', html)) == 2


def test_the_cost_of_brackets_counts_each_candidate_once(two):
    _, html, rungs, _ = two
    reached = {name: max(r["epochs"] for r in rungs if name in r["scores"]) for name in TWO}
    # Every candidate reaches rung 1 (3 epochs) in bracket 1; its best three (late, flat1,
    # flat2) and bracket 0's best (flat1) go on to 9.
    assert sorted(reached.values()) == [3] * 6 + [9] * 3
    table = dict(parse_tables(html).tables["cost"])
    assert table["Epochs trained"] == str(sum(reached.values())) == "45"
    assert table["Fraction of the full grid"] == f"{45 / 81:.1%}"
    assert "Alone, this bracket would train 21 epochs" in html  # 6*1 + 2*3 + 9
    assert "Alone, this bracket would train 45 epochs" in html  # 6*3 + 3*9


SELECTION_CHANGES = {  # what is done to winner.csv -> a phrase of the error
    "no winner column": (lambda t: t.drop(columns="winner"), "missing column(s) ['winner']"),
    "a bracket left out": (lambda t: t.iloc[:1], "but the brackets' last rungs mark"),
    "another candidate": (lambda t: t.assign(candidate=["late", "late"]), "lists ['late', 'late']"),
    "brackets swapped": (lambda t: t.iloc[::-1], "but the brackets' last rungs mark"),
    "two winners": (lambda t: t.assign(winner="yes"), "marks bracket(s) ['0', '1']"),
    "the worse one": (
        lambda t: t.assign(winner=["no" if w == "yes" else "yes" for w in t["winner"]]),
        "the best by validation mIoU is bracket",
    ),
}


@pytest.mark.parametrize("case", sorted(SELECTION_CHANGES))
def test_a_selection_that_does_not_fit_the_brackets_is_refused(case, tmp_path):
    paths, histories, _ = _search(tmp_path, brackets=2, curves=TWO)
    change, phrase = SELECTION_CHANGES[case]
    selection = tmp_path / "winner.csv"
    change(pd.read_csv(selection)).to_csv(selection, index=False)
    with pytest.raises(SearchReportError) as error:
        _build(tmp_path, paths, histories)
    assert str(error.value).startswith(f"{selection}: ") and phrase in str(error.value)
    assert "\n" not in str(error.value) and not (tmp_path / "search").exists()


def test_brackets_out_of_order_or_not_over_every_candidate_are_refused(tmp_path):
    paths, histories, _ = _search(tmp_path, brackets=2)
    first_of_1 = paths[3]
    with pytest.raises(SearchReportError, match=r"bracket 1 out of order"):
        _build(tmp_path, paths[3:] + paths[:3], histories)
    pd.read_csv(first_of_1).iloc[1:].to_csv(first_of_1, index=False)
    with pytest.raises(SearchReportError, match=r"a bracket starts with every candidate"):
        _build(tmp_path, paths, histories)
