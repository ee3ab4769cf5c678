"""Tests for segpipe.reporting.comparison: the comparison report of several runs, on small fake run outputs."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from segpipe.evaluation.crossval import write_crossval
from segpipe.reporting.comparison import (
    CROSSVAL_INPUTS,
    REQUIRED_INPUTS,
    RunResult,
    bootstrap_mean,
    most_disagreeing,
    paired_difference,
)

from helpers.html import GALLERY_SIZE, comparison_html, parse_tables
from helpers.report_inputs import CLASSES, N_IMAGES, make_run, three_runs

LABELLED = 11 * 16  # report_inputs' truth masks are 12 x 16 with row 0 ignored
POOL = 9  # images of the train+val pool that the 3 folds of _with_folds partition
FOLDS = 3
FOLD_TEST = [0.70, 0.72, 0.77]  # test mIoU of fold i's model, in every cross-validated run
FOLD_TEST_PET = [0.80, 0.70, 0.90]  # test IoU of class "pet" of fold i's model


@pytest.fixture
def runs(tmp_path: Path) -> list[RunResult]:
    return three_runs(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """The comparison of the three runs, built once: its folder's parent and its HTML."""
    root = tmp_path_factory.mktemp("built")
    return root, comparison_html(root, three_runs(root))


def _decode(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_leaderboard_ranks_and_selects_by_validation_not_test(built):
    parsed = parse_tables(built[1])

    board = parsed.tables["leaderboard"]
    assert board[0][:5] == ["Rank", "Run", "Val mIoU", "Test mIoU", "Test mean Dice"]
    assert [row[1] for row in board[1:]] == ["wide selected", "deep", "base"]
    assert [row[3] for row in board[1:]] == ["0.700", "0.900", "0.800"]  # not the test order
    assert parsed.row_classes["leaderboard"] == [None, "selected", None, None]
    header = board[0]
    wide = dict(zip(header, board[1], strict=True))
    assert wide["Test IoU background"] == "0.620" and wide["Test IoU border"] == "n/a"
    assert wide["Test foreground IoU"] == "0.850"
    assert wide["Best epoch"] == "2 of 3"
    assert wide["Training time"] == "0:03:01"
    assert wide["Images/s"] == "20.5"
    assert wide["Parameters"] == "1,234,567"
    assert dict(zip(header, board[3], strict=True))["Parameters"] == "n/a"  # no model.json


def test_leaderboard_csv_columns_and_values(built):
    table = pd.read_csv(built[0] / "compare" / "leaderboard.csv")

    assert list(table.columns) == [
        "rank",
        "run",
        "model",
        "selected",
        "folds",
        "val_miou",
        "val_miou_std",
        "test_miou",
        "test_mean_dice",
        "test_foreground_iou",
        "test_pixel_accuracy",
        "iou_pet",
        "iou_background",
        "iou_border",
        "best_epoch",
        "epochs",
        "train_seconds",
        "images_per_s",
        "parameters",
        "trained_as",
    ]
    assert table["run"].tolist() == ["wide", "deep", "base"]
    assert table["model"].isna().all() and table["folds"].isna().all()
    assert table["val_miou_std"].isna().all()
    assert table["rank"].tolist() == [1, 2, 3]
    assert table["selected"].tolist() == [True, False, False]
    assert table["iou_border"].isna().all()
    assert table.loc[0, "parameters"] == 1234567 and pd.isna(table.loc[2, "parameters"])
    text = (built[0] / "compare" / "leaderboard.csv").read_text()
    assert text.splitlines()[1].endswith(",2,3,181.0,20.5,1234567,")  # integers stay integers


def test_report_is_self_contained_with_overrides_links_and_figures(built):
    root, html = built
    parsed = parse_tables(html)

    assert not re.search(r'(src|href)="(https?:)?//', html)
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 2 + GALLERY_SIZE  # figures, deep vs wide (base agrees with wide)
    for src in sources:
        _decode(src)
    for name in ("base", "wide", "deep"):  # the leaderboard's, the overrides table's and more
        assert html.count(f'href="../runs/{name}/report/report.html"') >= 2
    differs = {row[0]: row[1] for row in parsed.tables["overrides"][1:]}
    assert differs == {
        "wide": "train.encoder = resnet50train.lr = 0.0005",
        "deep": 'model.depth = 5train.augment = {"flip": true}',
        "base": "base config",
    }
    assert "selected, by <strong>validation</strong> mIoU" in html
    for name in ("learning_curves", "per_class"):
        with Image.open(root / "compare" / "figures" / f"{name}.png") as figure:
            assert figure.format == "PNG" and figure.width > 300


def test_a_run_that_shares_a_training_is_shown_as_a_view_of_that_model(tmp_path):
    base, wide, deep = three_runs(tmp_path)
    flips = dataclasses.replace(base, name="flips", trained_as="base", overrides={"x.tta": 1})
    flips = dataclasses.replace(flips, report_html="../runs/flips/report/report.html")
    html = comparison_html(tmp_path, [base, wide, deep, flips])
    parsed = parse_tables(html)
    differs = {row[0]: row[1] for row in parsed.tables["overrides"][1:]}
    assert differs["flips"] == "x.tta = 1the same trained model as base (no training of its own)"
    assert differs["base"] == "base config"
    assert "(model of base)" in html and "a view of the same trained model" in html
    table = pd.read_csv(tmp_path / "compare" / "leaderboard.csv")
    assert dict(zip(table["run"], table["trained_as"].fillna(""), strict=True)) == {
        "wide": "",
        "deep": "",
        "base": "",
        "flips": "base",
    }


def test_paired_table_against_the_selected_run(built):
    parsed = parse_tables(built[1])

    rows = {row[0]: row[1:] for row in parsed.tables["paired-differences"][1:]}
    assert set(rows) == {"deep", "base"}
    assert rows["deep"][0] == str(N_IMAGES) and rows["deep"][-1] == "better"
    assert float(rows["deep"][1]) == pytest.approx(0.1, abs=0.01)
    assert float(rows["deep"][2]) > 0 and float(rows["deep"][2]) <= float(rows["deep"][1])
    assert rows["base"][1] == "-0.0500" and rows["base"][-1] == "worse"


def test_gallery_shows_the_images_where_predictions_disagree_most(built):
    html = built[1]

    deep_section = html.split("deep vs wide</h4>")[1].split("<h4")[0]
    captions = re.findall(r"<code>(img\d)</code> — disagreement ([\d.]+)", deep_section)
    fraction = f"{20 / LABELLED:.3f}"
    assert captions == [("img2", fraction), ("img3", fraction)]  # tie: by id
    # Run "base" predicts like "wide" everywhere: no image to show.
    base_section = html.split("base vs wide</h4>")[1]
    assert "<img" not in base_section and "same class on every labelled pixel" in base_section

    src = re.search(r'<img class="gallery" src="([^"]+)"', deep_section)[1]
    sheet = _decode(src)
    width = 16
    gap = (sheet.shape[1] - 4 * width) // 3
    assert sheet.shape[0] == 12 and gap > 0
    image, truth, selected, other = (
        sheet[:, i * (width + gap) : i * (width + gap) + width] for i in range(4)
    )
    differ = np.any(selected != other, axis=2)
    assert differ[2:].sum() == 20  # the changed labelled pixels
    assert differ[0].all()  # the ignored row, predicted differently, shown but not counted
    assert (truth[0] == 0).all()  # ignored truth pixels are black


def test_single_run_has_leaderboard_but_nothing_to_compare(tmp_path, runs):
    html = comparison_html(tmp_path, runs[:1])
    parsed = parse_tables(html)

    assert [row[1] for row in parsed.tables["leaderboard"][1:]] == ["base selected"]
    assert "paired-differences" not in parsed.tables
    assert 'id="nothing-to-compare"' in html and "nothing to compare" in html
    assert '<img class="gallery"' not in html


def test_tied_validation_scores_keep_the_declared_order(tmp_path):
    runs = [
        make_run(tmp_path, name, val=0.5, test=test, overrides={})
        for name, test in (("second", 0.6), ("first", 0.9))
    ]
    comparison_html(tmp_path, runs)

    table = pd.read_csv(tmp_path / "compare" / "leaderboard.csv")
    assert table["run"].tolist() == ["second", "first"]
    assert table["selected"].tolist() == [True, False]


@pytest.mark.parametrize("field", REQUIRED_INPUTS)
def test_missing_input_raises_naming_it_and_its_run(tmp_path, runs, field):
    missing = tmp_path / "gone" / f"missing_{field}"
    runs[2] = dataclasses.replace(runs[2], **{field: missing})

    with pytest.raises(FileNotFoundError, match=f"{field} of run 'deep'.*missing_{field}"):
        comparison_html(tmp_path, runs)
    assert not (tmp_path / "compare").exists()


def test_run_result_from_mapping():
    fields = {
        "name": "a",
        "report_html": "../runs/a/report/report.html",
        **{field: f"results/runs/a/{field}" for field in REQUIRED_INPUTS},
    }
    run = RunResult.from_mapping(fields)
    assert run.overrides == {} and run.model_json is None and run.history == fields["history"]
    assert all(getattr(run, field) is None for field in CROSSVAL_INPUTS)
    assert not run.cross_validated
    crossval = {field: f"results/runs/a/crossval/{field}" for field in CROSSVAL_INPUTS}
    run = RunResult.from_mapping({**fields, **crossval})
    assert run.cross_validated and run.crossval_per_image == crossval["crossval_per_image"]
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\], missing \['history'\]"):
        RunResult.from_mapping({**{k: v for k, v in fields.items() if k != "history"}, "colour": 1})


def test_bootstrap_is_seeded_and_contains_the_mean():
    differences = np.random.default_rng(0).normal(0.02, 0.05, 40)

    first = bootstrap_mean(differences, seed=7, n_resamples=2000)
    again = bootstrap_mean(differences, seed=7, n_resamples=2000)
    other_seed = bootstrap_mean(differences, seed=8, n_resamples=2000)

    assert first == again
    assert (other_seed.low, other_seed.high) != (first.low, first.high)
    assert first.n_images == 40 and first.mean == pytest.approx(differences.mean())
    assert first.low < first.mean < first.high
    assert first.high - first.low == pytest.approx(4 * 0.05 / np.sqrt(40), rel=0.3)


def test_bootstrap_degenerate_samples():
    equal = bootstrap_mean(np.full(5, -0.25))
    assert (equal.n_images, equal.mean, equal.low, equal.high) == (5, -0.25, -0.25, -0.25)
    assert equal.verdict == "worse"
    assert bootstrap_mean(np.zeros(3)).verdict == "no clear difference"
    one = bootstrap_mean(np.array([0.3]))
    assert (one.n_images, one.mean, one.low, one.high, one.verdict) == (1, 0.3, None, None, "n/a")
    none = bootstrap_mean(np.array([]))
    assert (none.n_images, none.mean, none.low) == (0, None, None)


def test_paired_difference_pairs_by_id_over_images_scored_in_both():
    selected = pd.DataFrame({"id": ["a", "b", "c", "d"], "mean_iou": [0.5, 0.6, np.nan, 0.2]})
    other = pd.DataFrame({"id": ["d", "c", "b", "e"], "mean_iou": [0.4, 0.9, 0.7, 0.1]})

    result = paired_difference(selected, other, seed=0)

    # Paired: b (0.7 - 0.6) and d (0.4 - 0.2); a and e are in one run only, c has no score.
    assert result.n_images == 2
    assert result.mean == pytest.approx(0.15)
    assert result.low == pytest.approx(0.1) and result.high == pytest.approx(0.2)
    assert result.verdict == "better"


def test_most_disagreeing_orders_by_fraction_then_id_and_skips_agreement():
    fractions = pd.Series({"z": 0.5, "a": 0.1, "m": 0.5, "q": 0.0, "n": np.nan, "b": 0.3})
    assert most_disagreeing(fractions, 3) == [("m", 0.5), ("z", 0.5), ("b", 0.3)]
    assert most_disagreeing(fractions, 10)[-1] == ("a", 0.1)


def test_gallery_size_zero_keeps_the_paired_table_without_galleries(tmp_path, runs):
    html = comparison_html(tmp_path, runs, gallery_size=0)

    assert len(parse_tables(html).tables["paired-differences"]) == 3
    assert '<img class="gallery"' not in html and "disagree most" not in html


def test_rule_script_builds_the_comparison_from_snakemake_params(tmp_path, runs):
    """scripts/compare.py, in a process of its own (it sets up logging), with the rule's
    output, log and params (rules/compare.smk) in a stand-in for Snakemake's object."""
    out = tmp_path / "results" / "compare"
    job = {
        "output": {
            "html": str(out / "report.html"),
            "leaderboard": str(out / "leaderboard.csv"),
            "curves": str(out / "figures" / "learning_curves.png"),
            "per_class": str(out / "figures" / "per_class.png"),
        },
        "log": [str(tmp_path / "logs" / "compare.log")],
        "params": {
            "runs": [
                {k: str(v) if isinstance(v, Path) else v for k, v in vars(run).items()}
                for run in runs
            ],
            "classes": CLASSES,
            "ignore_index": 255,
            "compare": {
                "title": "pets (comparison)",
                "gallery_size": 1,
                "seed": 0,
                "bootstrap_resamples": 500,
            },
            "infer": None,
        },
    }
    stand_in = (
        "import json, runpy, sys, types\n"
        "job = json.loads(sys.argv[1])\n"
        "snakemake = types.SimpleNamespace(\n"
        "    output=types.SimpleNamespace(**job['output']),\n"
        "    params=types.SimpleNamespace(**job['params']),\n"
        "    log=job['log'])\n"
        "runpy.run_path(sys.argv[2], init_globals={'snakemake': snakemake})\n"
    )
    script = Path(__file__).resolve().parents[2] / "scripts" / "compare.py"
    subprocess.run(
        [sys.executable, "-c", stand_in, json.dumps(job), str(script)], check=True, cwd=tmp_path
    )

    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<title>pets (comparison)</title>" in html
    assert len(re.findall(r'<img class="gallery"', html)) == 1
    assert pd.read_csv(out / "leaderboard.csv")["run"].tolist() == ["wide", "deep", "base"]
    assert (out / "figures" / "per_class.png").is_file()
    assert "selected wide" in (tmp_path / "logs" / "compare.log").read_text()


# --------------------------------------------------------------------------- cross-validation


def _fold_metrics(split: str, mean_iou: float, pet_iou: float) -> dict:
    """A fold model's metrics.json, shaped like segpipe.evaluation.evaluate's."""
    per_class = {
        "pet": {"iou": pet_iou, "dice": pet_iou + 0.05},
        "background": {"iou": 0.6, "dice": 0.7},
        "border": {"iou": None, "dice": None},
    }
    scores = {"mean_dice": mean_iou + 0.1, "pixel_accuracy": 0.9, "foreground_iou": mean_iou - 0.1}
    return {"split": split, "n_images": 3, "mean_iou": mean_iou, **scores, "per_class": per_class}


def _pool_per_image(path: Path, miou: dict[str, float]) -> None:
    """A per_image.csv, shaped like segpipe.evaluation.evaluate's, with these mean IoU by image id."""
    ids = list(miou)
    values = np.array([miou[i] for i in ids])
    pd.DataFrame(
        {
            "id": ids,
            "pixel_accuracy": 0.9,
            "mean_iou": values,
            "mean_dice": values + 0.05,
            "foreground_iou": values,
            "iou_pet": values,
            "iou_background": 0.8,
            "iou_border": np.nan,
        }
    ).to_csv(path, index=False)


def _with_folds(
    tmp_path: Path,
    run: RunResult,
    *,
    val: list[float],
    out_of_fold: np.ndarray,
    ensemble: bool = True,
    blocks: bool = False,
) -> RunResult:
    """``run`` (of make_run) cross-validated with FOLDS folds, summarised by write_crossval:
    fold i's val mIoU ``val[i]``, test mIoU FOLD_TEST[i]; pool image ``pool<j>`` scored out of
    fold ``out_of_fold[j]`` by fold j % 3 (``blocks``: j // 3). Fold 0's val metrics stand for
    the run's; with ``ensemble`` the run's test metrics are the ensemble's, else fold 0's."""
    root = tmp_path / run.name / "folds"
    root.mkdir()
    paths = []
    for fold in range(FOLDS):
        out = root / f"fold{fold}"
        out.mkdir()
        fold_paths = {name: out / name for name in ("val.json", "test.json", "per_image.csv")}
        for split, miou in (("val", val[fold]), ("test", FOLD_TEST[fold])):
            metrics = _fold_metrics(split, miou, FOLD_TEST_PET[fold])
            fold_paths[f"{split}.json"].write_text(json.dumps(metrics))
        mine = [j for j in range(POOL) if (j // 3 if blocks else j % 3) == fold]
        _pool_per_image(fold_paths["per_image.csv"], {f"pool{j}": out_of_fold[j] for j in mine})
        paths.append(fold_paths)
    crossval = {field: root / field for field in CROSSVAL_INPUTS}
    write_crossval(
        crossval["crossval_metrics"],
        crossval["crossval_folds"],
        crossval["crossval_per_image"],
        val_metrics=[f["val.json"] for f in paths],
        test_metrics=[f["test.json"] for f in paths],
        val_per_image=[f["per_image.csv"] for f in paths],
        class_names=CLASSES,
        ensemble_test_metrics=run.test_metrics if ensemble else None,
    )
    test_metrics = run.test_metrics if ensemble else paths[0]["test.json"]
    return dataclasses.replace(
        run, val_metrics=paths[0]["val.json"], test_metrics=test_metrics, **crossval
    )


def _cv_run(tmp_path, name, *, val, out_of_fold, shift=0.0, changes=None, **options):
    """A cross-validated run of make_run (test mIoU 0.8, test per-image shifted by ``shift``)."""
    run = make_run(tmp_path, name, val=0.5, test=0.8, overrides={}, shift=shift, changes=changes)
    return _with_folds(tmp_path, run, val=val, out_of_fold=out_of_fold, **options)


def _paired_rows(html: str) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in parse_tables(html).tables["paired-differences"][1:]}


OUT_OF_FOLD = 0.5 + 0.04 * np.arange(POOL)  # the selected run's out-of-fold scores


@pytest.fixture
def ranked(tmp_path: Path) -> tuple[str, pd.DataFrame]:
    """Runs "first-fold" (fold 0 the best val mIoU of all, CV mean 0.60, no ensemble), "plain"
    (no folds, val 0.70) and "cv-best" (fold 0 the worst, CV mean 0.75): the comparison's HTML
    and leaderboard."""
    runs = [
        _cv_run(
            tmp_path, "first-fold", val=[0.80, 0.50, 0.50], out_of_fold=OUT_OF_FOLD, ensemble=False
        ),
        make_run(tmp_path, "plain", val=0.70, test=0.8, overrides={}, shift=-0.05),
        _cv_run(tmp_path, "cv-best", val=[0.55, 0.85, 0.85], out_of_fold=OUT_OF_FOLD),
    ]
    html = comparison_html(tmp_path, runs)
    return html, pd.read_csv(tmp_path / "compare" / "leaderboard.csv", dtype={"model": str})


def test_cross_validated_runs_rank_by_the_mean_over_folds_not_fold_0(ranked):
    table = ranked[1]
    main = table[table["rank"].notna()]

    # By fold 0's val mIoU the order would be first-fold (0.80), plain (0.70), cv-best (0.55).
    assert main["run"].tolist() == ["cv-best", "plain", "first-fold"]
    assert main["rank"].tolist() == [1, 2, 3]
    assert main["selected"].tolist() == [True, False, False]
    assert main["model"].fillna("").tolist() == ["cv", "", "cv"]
    assert main["folds"].tolist()[::2] == [FOLDS, FOLDS] and pd.isna(main["folds"].iloc[1])
    best = main.iloc[0]
    assert best["val_miou"] == pytest.approx(0.75)
    assert best["val_miou_std"] == pytest.approx(statistics.stdev([0.55, 0.85, 0.85]))
    assert main.iloc[2]["val_miou"] == pytest.approx(0.60)
    assert pd.isna(main.iloc[1]["val_miou_std"]) and main.iloc[1]["val_miou"] == 0.70
    # Test scores: the mean over the fold models, not the ensemble's (0.8).
    assert best["test_miou"] == pytest.approx(statistics.mean(FOLD_TEST))
    assert best["test_mean_dice"] == pytest.approx(statistics.mean(FOLD_TEST) + 0.1)
    assert best["iou_pet"] == pytest.approx(statistics.mean(FOLD_TEST_PET))
    assert best["iou_background"] == pytest.approx(0.6) and pd.isna(best["iou_border"])
    assert best["best_epoch"] == 2 and best["epochs"] == 3  # fold 0's history


def test_fold_and_ensemble_rows_follow_their_run_unranked(ranked):
    table = ranked[1]

    assert list(zip(table["run"], table["model"].fillna(""), strict=True)) == [
        ("cv-best", "cv"),
        ("cv-best", "fold0"),
        ("cv-best", "fold1"),
        ("cv-best", "fold2"),
        ("cv-best", "ensemble"),
        ("plain", ""),
        ("first-fold", "cv"),
        ("first-fold", "fold0"),
        ("first-fold", "fold1"),
        ("first-fold", "fold2"),
    ]
    sub = table[table["model"].isin(["fold0", "fold1", "fold2", "ensemble"])]
    assert sub["rank"].isna().all() and not sub["selected"].any()
    assert sub["folds"].isna().all() and sub["val_miou_std"].isna().all()
    assert sub["iou_pet"].isna().all() and sub["best_epoch"].isna().all()
    folds = sub[sub["run"] == "cv-best"].set_index("model")
    assert folds["val_miou"].iloc[:3].tolist() == [0.55, 0.85, 0.85]
    assert folds["test_miou"].iloc[:3].tolist() == FOLD_TEST
    assert folds.loc["fold1", "test_mean_dice"] == pytest.approx(FOLD_TEST[1] + 0.1)
    assert folds.loc["fold2", "test_foreground_iou"] == pytest.approx(FOLD_TEST[2] - 0.1)
    assert folds.loc["fold0", "test_pixel_accuracy"] == 0.9
    ensemble = folds.loc["ensemble"]
    assert pd.isna(ensemble["val_miou"])  # no validation split
    assert ensemble["test_miou"] == 0.8 and ensemble["test_mean_dice"] == 0.8
    assert ensemble["test_foreground_iou"] == 0.85 and ensemble["test_pixel_accuracy"] == 0.93


def test_html_leaderboard_shows_mean_std_and_subordinate_fold_rows(ranked):
    html = ranked[0]
    parsed = parse_tables(html)

    board = parsed.tables["leaderboard"]
    header = board[0]
    assert all(len(row) == len(header) for row in board)
    assert [row[:3] for row in board[1:6]] == [
        ["1", "cv-best selected", "0.750 ± 0.173 (3 folds)"],
        ["", "↳ fold0", "0.550"],
        ["", "↳ fold1", "0.850"],
        ["", "↳ fold2", "0.850"],
        ["", "↳ ensemble", "n/a"],
    ]
    assert board[6][:3] == ["2", "plain", "0.700"]
    assert board[7][:3] == ["3", "first-fold", "0.600 ± 0.173 (3 folds)"]
    assert [row[1] for row in board[8:]] == ["↳ fold0", "↳ fold1", "↳ fold2"]
    classes = parsed.row_classes["leaderboard"]
    assert classes == [None, "selected", *["sub"] * 4, None, None, *["sub"] * 3]
    text = " ".join(html.split())
    assert "ranked by its validation mIoU <strong>averaged over its k fold models</strong>" in text
    assert "mean ± std (sample standard deviation over the folds)" in text


def test_paired_statistics_on_out_of_fold_images_when_every_run_has_folds(tmp_path):
    other = OUT_OF_FOLD + 0.03 + np.random.default_rng(5).normal(0.0, 0.02, POOL)
    changes = {"img2": 7, "img5": 3}
    runs = [
        _cv_run(
            tmp_path,
            "other",
            val=[0.6] * 3,
            out_of_fold=other,
            blocks=True,
            shift=-0.05,
            changes=changes,
        ),
        _cv_run(tmp_path, "picked", val=[0.7] * 3, out_of_fold=OUT_OF_FOLD),
    ]
    html = comparison_html(tmp_path, runs)

    expected = other - OUT_OF_FOLD  # by pool image; the runs' folds partition it differently
    row = _paired_rows(html)["other"]
    assert row[0] == str(POOL)
    assert row[1] == f"{expected.mean():+.4f}" != "-0.0500"  # not the test split's difference
    interval = bootstrap_mean(expected, seed=0, n_resamples=2000)
    assert row[2:4] == [f"{interval.low:+.4f}", f"{interval.high:+.4f}"]
    assert row[4] == "better"
    assert "Paired comparison with the selected run (picked), cross-validation</h2>" in html
    paired_note = html.split('id="paired-data"')[1].split("</p>")[0]
    assert "out-of-fold validation images of the train+val pool (cross-validation)" in paired_note
    # The galleries stay on the test predictions.
    shown = re.findall(r"<code>(\w+)</code> — disagreement", html)
    assert shown == ["img2", "img5"]


def test_paired_statistics_on_the_test_split_when_not_every_run_has_folds(tmp_path):
    runs = [
        make_run(tmp_path, "plain", val=0.60, test=0.9, overrides={}, shift=-0.05),
        _cv_run(tmp_path, "picked", val=[0.7, 0.7, 0.7], out_of_fold=OUT_OF_FOLD),
    ]
    html = comparison_html(tmp_path, runs)

    row = _paired_rows(html)["plain"]
    assert row[0] == str(N_IMAGES) and row[1] == "-0.0500" and row[-1] == "worse"
    assert "Paired comparison with the selected run (picked), test split</h2>" in html
    paired_note = html.split('id="paired-data"')[1].split("</p>")[0]
    assert "<strong>test split</strong>" in paired_note and "out-of-fold" not in paired_note
    assert "scored by its fold ensemble" in paired_note


def test_crossval_inputs_come_together_and_must_exist(tmp_path):
    run = _cv_run(tmp_path, "cv", val=[0.7, 0.7, 0.7], out_of_fold=OUT_OF_FOLD)
    partial = dataclasses.replace(run, crossval_folds=None)
    with pytest.raises(ValueError, match="run 'cv': the cross-validation inputs"):
        comparison_html(tmp_path, [partial])
    gone = dataclasses.replace(run, crossval_per_image=tmp_path / "gone.csv")
    with pytest.raises(FileNotFoundError, match="crossval_per_image of run 'cv'.*gone.csv"):
        comparison_html(tmp_path, [gone])
    assert not (tmp_path / "compare").exists()
