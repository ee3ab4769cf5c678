"""Tests for segpipe.reporting.run_report and segpipe.reporting.plots on small fake pipeline outputs."""

from __future__ import annotations

import base64
import io
import re
import statistics
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.reporting.run_report import NOT_A_CHECKOUT, ReportInputs, build_report

from helpers.report_inputs import (
    CLASSES,
    FOLD_TEST,
    FOLD_VAL,
    FOLD_VAL_CLASS_IOU,
    GALLERY_SIZE,
    N_IMAGES,
    fold_report_inputs,
    report_inputs,
)


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    """The fields of build_report's ReportInputs, with every input written under tmp_path."""
    return report_inputs(tmp_path)


class _Tables(HTMLParser):
    """Collects the cell texts of each <table id=...> as a list of rows."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._current: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self._current = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self._current is not None:
            self._current.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._current = None
        elif tag in ("td", "th") and self._current is not None and self._cell is not None:
            self._current[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def _build(tmp_path: Path, inputs: dict) -> str:
    out = tmp_path / "report" / "report.html"
    build_report(out, tmp_path / "report" / "figures", ReportInputs(**inputs))
    return out.read_text(encoding="utf-8")


def test_report_is_self_contained_with_metrics_figures_and_gallery(tmp_path, inputs):
    html = _build(tmp_path, inputs)

    assert not re.search(r'(src|href)="http', html)
    assert all(
        src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', html)
    )
    for name in CLASSES:
        assert name in html

    tables = _tables(html)
    overall = {row[0]: row[1:] for row in tables["overall-metrics"][1:]}
    assert overall["test"] == [str(N_IMAGES), "0.930", "0.712", "0.800", "0.850"]
    assert overall["val"][2] == "0.650"
    per_class = {row[1]: row[2:] for row in tables["per-class-metrics"][1:]}
    assert per_class["background"] == ["0.620", "0.700", "3,000", "3,100"]
    assert per_class["border"] == ["n/a", "n/a", "0", "0"]

    summary = dict(tables["run-summary"])
    assert summary["Dataset"] == "oxford_pets"
    assert summary["Git commit"] == NOT_A_CHECKOUT
    assert summary["Epochs trained"] == "3"
    assert summary["Training time"] == "0:03:01"
    assert summary["Best val mIoU"] == "0.550 (epoch 2)"
    assert tables["benchmarks"][1] == ["train", "1:02:04", "3723.5", "2048"]
    own = tables["benchmarks"][-1]  # the report job's own row: it cannot read its benchmark file
    assert own[0] == "report (this job, until the page was written)"
    assert 0 < float(own[2]) < 24 * 3600 and float(own[3]) > 10
    versions = dict(tables["versions"][1:])
    assert set(versions) >= {"python", "torch", "numpy", "segmentation_models_pytorch", "segpipe"}
    assert "epochs: 3" in html  # the config, as YAML

    figures = tmp_path / "report" / "figures"
    for name in ("confusion", "learning_curves", "per_class"):
        with Image.open(figures / f"{name}.png") as figure:
            assert figure.format == "PNG"
            assert figure.width > 300 and figure.height > 300

    gallery = re.findall(r'<img class="gallery" src="data:image/png;base64,', html)
    assert len(gallery) == 3 * GALLERY_SIZE
    captions = re.findall(r"<code>(img\d)</code> — mIoU ([\d.]+)", html)
    assert captions == [
        ("img0", "0.900"),
        ("img1", "0.800"),  # best
        ("img2", "0.700"),
        ("img3", "0.600"),  # median of 7
        ("img6", "0.300"),
        ("img5", "0.400"),  # worst first
    ]


def test_gallery_composite_shows_image_truth_prediction_and_errors(tmp_path, inputs):
    html = _build(tmp_path, inputs)

    # The first "Worst" row is img6: 6 wrong pixels in row 1, row 0 ignored (truth 255).
    worst = re.findall(r'<img class="gallery" src="data:image/png;base64,([^"]+)"', html)[4]
    with Image.open(io.BytesIO(base64.b64decode(worst))) as composite:
        sheet = np.asarray(composite.convert("RGB"))
    width = 16
    gap = (sheet.shape[1] - 4 * width) // 3
    assert sheet.shape[0] == 12 and gap > 0
    truth, pred, error = (
        sheet[:, i * (width + gap) : i * (width + gap) + width] for i in (1, 2, 3)
    )
    red = np.all(error == (255, 0, 0), axis=2)
    assert red.sum() == 6 and red[1, :6].all()
    assert (error[0] == 0).all()  # ignored pixels black, though predicted as class 0
    assert (truth[0] == 0).all() and not (pred[0] == 0).all()
    assert not (error[2:] == 0).all()  # the dimmed image shows through elsewhere


def test_dataset_mapping_is_shown_as_readable_fields(tmp_path, inputs):
    inputs["config"] = {
        **inputs["config"],
        "dataset": {
            "source": "folder",
            "name": "membranes",
            "root": "/data/isbi",
            "layout": "images_masks",
            "split_lists": None,
            "max_image_pixels": 1000,
            "urls": [{"filename": "a.tar", "url": "https://x/a.tar"}],
            "synthetic": {"n_images": 24, "seed": 1},
        },
    }
    summary = dict(_tables(_build(tmp_path, inputs))["run-summary"])
    assert summary["Dataset"] == "membranes"
    assert summary["Dataset source"] == "folder"
    assert summary["Dataset root"] == "/data/isbi"
    assert summary["Dataset layout"] == "images_masks"
    assert summary["Dataset max image pixels"] == "1000"
    assert "Dataset split lists" not in summary  # unset options are left out
    assert "Dataset synthetic" not in summary and "Dataset urls" not in summary  # not read
    assert "{" not in "".join(summary.values())


@pytest.mark.parametrize(
    "source, shown",
    [
        ("synthetic", {"Dataset synthetic": "n_images: 24, seed: 1"}),
        ("oxford_pets", {"Dataset urls": "filename: a.tar, url: https://x/a.tar"}),
    ],
)
def test_a_download_source_shows_only_the_options_it_reads(tmp_path, inputs, source, shown):
    """A download source reads the oxford layout: no folder root or layout in its summary, nor
    the other source's archives or generator settings."""
    inputs["config"] = {
        **inputs["config"],
        "dataset": {
            "source": source,
            "root": "data/own",
            "layout": "folder",
            "mask_suffix": "_mask",
            "urls": [{"filename": "a.tar", "url": "https://x/a.tar"}],
            "synthetic": {"n_images": 24, "seed": 1},
        },
    }
    summary = dict(_tables(_build(tmp_path, inputs))["run-summary"])
    dataset = {k: v for k, v in summary.items() if k.startswith("Dataset ")}
    assert dataset == {"Dataset source": source, "Dataset mask suffix": "_mask", **shown}


def test_run_summary_shows_only_options_with_a_value_that_results_depend_on(tmp_path, inputs):
    inputs["config"] = {
        **inputs["config"],
        "dataset": {
            "source": "synthetic",
            "name": "membranes",
            "root": "/data/isbi",  # a folder's: the synthetic source does not read it
            "mask_suffix": "",  # empty: the masks have the images' stems
            "images_dir": None,
            "urls": [],
            "split_lists": {"trainval": None, "test": None},
            "retries": 3,  # untracked (segpipe.params.UNTRACKED_OPTIONS): no result depends on it
            "timeout": 30,
            "synthetic": {"seed": 0, "n_images": 24, "max_size": None},
        },
        "train": {"epochs": 3, "num_workers": 4, "log_to": "tensorboard"},
        "resources": {"train": {"mem_mb": 4096}},
    }

    html = _build(tmp_path, inputs)

    summary = dict(_tables(html)["run-summary"])
    dataset = {label: value for label, value in summary.items() if label.startswith("Dataset")}
    assert dataset == {
        "Dataset": "membranes",
        "Dataset source": "synthetic",
        "Dataset synthetic": "seed: 0, n_images: 24",  # a zero is a value
    }
    assert all(value.strip() for value in summary.values()), summary
    for untracked in ("retries", "timeout", "num_workers", "log_to", "tensorboard", "mem_mb"):
        assert untracked not in html  # neither in the summary nor in the configuration's YAML
    assert "epochs: 3" in html


def test_run_summary_shows_the_set_part_of_a_nested_option(tmp_path, inputs):
    inputs["config"] = {
        **inputs["config"],
        "dataset": {"source": "folder", "split_lists": {"trainval": "tv.txt", "test": None}},
    }

    summary = dict(_tables(_build(tmp_path, inputs))["run-summary"])

    assert summary["Dataset split lists"] == "trainval: tv.txt"


def test_missing_optional_inputs_are_shown_as_na(tmp_path, inputs):
    inputs["val_metrics_json"] = tmp_path / "nowhere" / "val_metrics.json"
    inputs["benchmarks"] = {"train": tmp_path / "nowhere" / "train.tsv", "predict": None}

    tables = _tables(_build(tmp_path, inputs))

    overall = {row[0]: row[1:] for row in tables["overall-metrics"][1:]}
    assert overall["val"] == ["n/a"] * 5
    assert overall["test"][2] == "0.712"
    assert tables["benchmarks"][1:-1] == [["train", "n/a", "n/a", "n/a"], ["predict"] + ["n/a"] * 3]


def test_without_val_metrics_only_test_row(tmp_path, inputs):
    del inputs["val_metrics_json"]

    tables = _tables(_build(tmp_path, inputs))

    assert [row[0] for row in tables["overall-metrics"][1:]] == ["test"]


@pytest.mark.parametrize(
    "name",
    [
        "metrics_json",
        "per_class_csv",
        "confusion_csv",
        "per_image_csv",
        "history_csv",
        "manifest_csv",
        "predictions_dir",
    ],
)
def test_missing_required_input_raises_naming_it(tmp_path, inputs, name):
    inputs[name] = tmp_path / "gone" / f"missing_{name}"

    with pytest.raises(FileNotFoundError, match=f"{name}.*missing_{name}"):
        _build(tmp_path, inputs)
    assert not (tmp_path / "report" / "report.html").exists()


def test_git_commit_of_repo_dir_is_shown(tmp_path, inputs):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("x\n")

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", "README")
    git("commit", "-q", "-m", "init")
    commit = git("rev-parse", "HEAD")
    inputs["repo_dir"] = repo

    assert dict(_tables(_build(tmp_path, inputs))["run-summary"])["Git commit"] == commit

    (repo / "README").write_text("changed\n")
    summary = dict(_tables(_build(tmp_path, inputs))["run-summary"])
    assert summary["Git commit"] == f"{commit} (dirty)"


def test_quarantine_list_is_shown_as_a_table(tmp_path, inputs):
    (tmp_path / "quarantine.csv").write_text(
        "file,problem\n"
        "data/images/Abyssinian_100.mat,not an image file (suffix .mat)\n"
        "data/images/beagle_116.jpg,unreadable image (OSError: image file is truncated)\n"
    )
    inputs["quarantine_csv"] = tmp_path / "quarantine.csv"

    html = _build(tmp_path, inputs)

    assert _tables(html)["quarantine"] == [
        ["File", "Problem"],
        ["data/images/Abyssinian_100.mat", "not an image file (suffix .mat)"],
        ["data/images/beagle_116.jpg", "unreadable image (OSError: image file is truncated)"],
    ]
    assert "2 file(s) were left out of the run" in html and 'href="#data"' in html
    # The list the report points to is the file it read, not a path spelled in the template.
    assert f"(see\n<code>{tmp_path / 'quarantine.csv'}</code>" in html


def test_a_test_split_carved_from_the_trainval_list_is_a_visible_warning(tmp_path, inputs):
    """No image on an official test list but some on the trainval list: the test split was
    carved from images the user listed for training, which the report says; not otherwise."""
    index = tmp_path / "index.csv"
    index.write_text("id,official_split\na,trainval\nb,trainval\nc,trainval\nd,\n")
    inputs["index_csv"] = index
    inputs["config"] = {**inputs["config"], "split": {"use_official": True, "test_fraction": 0.2}}
    html = _build(tmp_path, inputs)
    assert 'id="carved-test-warning"' in html and 'href="#carved-test"' in html
    assert "but\n3 are on the trainval list" in html
    for lists, use_official in [
        ("a,trainval\nb,test\n", True),
        ("a,\nb,\n", True),
        ("a,trainval\n", False),
    ]:
        index.write_text("id,official_split\n" + lists)
        inputs["config"]["split"] = {"use_official": use_official, "test_fraction": 0.2}
        assert "carved-test" not in _build(tmp_path, inputs)


def test_empty_quarantine_list_says_so(tmp_path, inputs):
    (tmp_path / "quarantine.csv").write_text("file,problem\n")
    inputs["quarantine_csv"] = tmp_path / "quarantine.csv"

    html = _build(tmp_path, inputs)

    assert "quarantine" not in _tables(html)
    assert "No file was quarantined" in html


def test_classes_missing_from_train_or_val_are_shown_under_data_quality(tmp_path, inputs):
    (tmp_path / "classes.csv").write_text(
        "class_id,class_name,train,val,test\n0,pet,10,3,4\n1,background,10,3,4\n2,border,0,0,2\n"
    )
    inputs["class_presence_csv"] = tmp_path / "classes.csv"

    html = _build(tmp_path, inputs)

    assert _tables(html)["missing-classes"] == [
        ["Class", "Missing from", "Images (train / val / test)"],
        ["border", "train, val", "0 / 0 / 2"],
    ]
    assert 'href="#data"' in html and "classes missing from a split" in html


def test_no_missing_class_no_section(tmp_path, inputs):
    (tmp_path / "classes.csv").write_text("class_id,class_name,train,val,test\n0,a,1,1,1\n")
    inputs["class_presence_csv"] = tmp_path / "classes.csv"
    assert "missing-classes" not in _tables(_build(tmp_path, inputs))


ENSEMBLE = "fold ensemble (mean probabilities of 3 folds)"


def _pm(values: list) -> str:
    """Mean ± sample standard deviation of the values that are not None, as the report shows."""
    present = [v for v in values if v is not None]
    return f"{statistics.mean(present):.3f} ± {statistics.stdev(present):.3f}"


def _column(scores: list[dict], name: str) -> list:
    return [fold[name] for fold in scores]


def test_fold_run_has_cross_validation_table_with_mean_and_std(tmp_path):
    html = _build(tmp_path, fold_report_inputs(tmp_path))
    tables = _tables(html)

    rows = tables["crossval-folds"]
    assert rows[0] == [
        "Model",
        "Best epoch",
        "Val mIoU",
        "Val Dice",
        "Test mIoU",
        "Test Dice",
        "Test pixel accuracy",
        "Test foreground IoU",
    ]
    assert [row[0] for row in rows[1:]] == [
        "fold 0",
        "fold 1",
        "fold 2",
        "fold ensemble",
        "mean ± std over 3 folds",
    ]
    for fold, row in enumerate(rows[1:4]):
        val, test = FOLD_VAL[fold], FOLD_TEST[fold]
        expected = [val["mean_iou"], val["mean_dice"], test["mean_iou"], test["mean_dice"]]
        expected += [test["pixel_accuracy"], test["foreground_iou"]]
        assert row[2:] == [f"{v:.3f}" for v in expected]
    assert [row[1] for row in rows[1:4]] == ["2", "3", "1"]  # each fold's best epoch
    assert rows[4] == ["fold ensemble", "—", "—", "—", "0.712", "0.800", "0.930", "0.850"]
    assert rows[5][2:] == [
        _pm(_column(FOLD_VAL, "mean_iou")),
        _pm(_column(FOLD_VAL, "mean_dice")),
        _pm(_column(FOLD_TEST, "mean_iou")),
        _pm(_column(FOLD_TEST, "mean_dice")),
        _pm(_column(FOLD_TEST, "pixel_accuracy")),
        _pm(_column(FOLD_TEST, "foreground_iou")),
    ]
    assert rows[5][2] == "0.650 ± 0.046"  # the formula above, checked by hand once
    assert "sample standard deviation over the 3 folds (ddof 1)" in html

    per_class = {row[0]: row[1] for row in tables["crossval-per-class"][1:]}
    assert per_class == {name: _pm([fold[name] for fold in FOLD_VAL_CLASS_IOU]) for name in CLASSES}
    assert per_class["border"] == "0.150 ± 0.071"  # fold 0 has no border: two folds


def test_fold_run_overall_val_is_the_folds_mean_and_test_names_the_model(tmp_path):
    html = _build(tmp_path, fold_report_inputs(tmp_path))
    tables = _tables(html)

    overall = {row[0]: row[1:] for row in tables["overall-metrics"][1:]}
    assert set(overall) == {f"test — {ENSEMBLE}", "val (mean of 3 folds)"}
    val = overall["val (mean of 3 folds)"]
    expected = [statistics.mean(_column(FOLD_VAL, s)) for s in ("pixel_accuracy", "mean_iou")]
    assert val[1:3] == [f"{v:.3f}" for v in expected]
    assert val[1:3] != [f"{FOLD_VAL[0][s]:.3f}" for s in ("pixel_accuracy", "mean_iou")]
    assert f"Per class (test) — {ENSEMBLE}</h3>" in html
    assert f"ranked by per-image mean IoU) — {ENSEMBLE}</h2>" in html
    assert f"Confusion matrix on the test split of the {ENSEMBLE};" in html

    summary = dict(tables["run-summary"])
    assert summary["Fold models trained"] == "3"
    assert summary["Epochs trained"] == "9 (3 / 3 / 3 per fold)"
    assert summary["Training time"] == "0:06:30 (sum over 3 folds)"  # 3 * (60 + 40 + 30) s
    assert summary["Cross-validated val mIoU"].startswith(_pm(_column(FOLD_VAL, "mean_iou")))
    assert "Best val mIoU" not in summary
    with Image.open(tmp_path / "report" / "figures" / "learning_curves.png") as figure:
        assert figure.format == "PNG"


def test_fold_run_without_ensemble_shows_fold_0(tmp_path):
    html = _build(tmp_path, fold_report_inputs(tmp_path, ensemble=False))
    tables = _tables(html)

    assert [row[0] for row in tables["crossval-folds"][1:]] == [
        "fold 0",
        "fold 1",
        "fold 2",
        "mean ± std over 3 folds",
    ]
    assert "test — fold 0" in {row[0] for row in tables["overall-metrics"]}
    assert "Per class (test) — fold 0</h3>" in html and "fold ensemble" not in html


def test_classes_missing_from_a_fold_are_listed_with_the_fold(tmp_path):
    inputs = fold_report_inputs(tmp_path)
    # The split's own val part lacks "border", which the pooled folds do not use as such.
    (tmp_path / "classes.csv").write_text(
        "class_id,class_name,train,val,test\n0,pet,10,3,4\n1,background,10,3,4\n2,border,2,0,1\n"
    )
    inputs["class_presence_csv"] = tmp_path / "classes.csv"

    html = _build(tmp_path, inputs)

    tables = _tables(html)
    assert tables["fold-missing-classes"] == [
        ["Fold", "Class", "Missing from", "Images (train / val)"],
        ["fold 1", "border", "val", "10 / 0"],
    ]
    assert "missing-classes" not in tables
    assert 'href="#data"' in html and 'id="data"' in html


def test_class_missing_from_the_whole_pool_is_still_listed_in_a_fold_run(tmp_path):
    inputs = fold_report_inputs(tmp_path)
    (tmp_path / "classes.csv").write_text(
        "class_id,class_name,train,val,test\n0,pet,10,3,4\n1,border,0,0,1\n"
    )
    inputs["class_presence_csv"] = tmp_path / "classes.csv"

    tables = _tables(_build(tmp_path, inputs))

    assert tables["missing-classes"][1] == ["border", "train, val", "0 / 0 / 1"]


def test_run_without_folds_has_no_cross_validation_section(tmp_path, inputs):
    html = _build(tmp_path, inputs)

    tables = _tables(html)
    assert "crossval-folds" not in tables and "crossval-per-class" not in tables
    assert "Cross-validation" not in html and "fold" not in html
    assert [row[0] for row in tables["overall-metrics"][1:]] == ["test", "val"]


def test_missing_crossval_summary_raises_naming_it(tmp_path):
    inputs = fold_report_inputs(tmp_path)
    inputs["crossval_json"] = tmp_path / "gone" / "metrics.json"

    with pytest.raises(FileNotFoundError, match="crossval_json"):
        _build(tmp_path, inputs)


@pytest.mark.parametrize(
    "folds, tta", [(False, ()), (True, ()), (False, ("hflip",)), (True, ("hflip",))]
)
def test_the_rules_inputs_become_report_inputs(folds, tta):
    """Rule report's named inputs (as workflow.layout names them) and params, as its script
    passes them: fold histories and cross-validation files only with folds, the scores without
    the flips only with predict.tta."""
    from segpipe.reporting.run_report import inputs_of_rule

    files = {
        name: f"{name}.x"
        for name in ("metrics", "val_metrics", "per_class", "confusion", "per_image")
        + ("manifest", "predictions", "quarantine", "classes")
    }
    files |= {"history": ["a/history.csv", "b/history.csv"], "fold_classes": ["f0.csv"]}
    if folds:
        files |= {"crossval_metrics": "cv.json", "crossval_folds": "folds.csv"}
    if tta:
        files |= {"no_tta_metrics": "n.json", "no_tta_per_class": "n.csv"}
        files |= {"tta_val_metrics": ["t.json"], "no_tta_val_metrics": ["nv.json"]}
    inputs = inputs_of_rule(
        files,
        {"title": "T", "gallery_size": 2},
        tta=tta,
        model="",
        class_names=["a", "b"],
        config={},
        benchmarks={},
    )
    assert inputs.history_csv == "a/history.csv" and inputs.title == "T"
    assert inputs.fold_histories == (["a/history.csv", "b/history.csv"] if folds else ())
    assert inputs.crossval_json == ("cv.json" if folds else None)
    assert inputs.fold_class_presence_csvs == ["f0.csv"] and inputs.infer_dir is None
    assert inputs.index_csv is None  # the remap index, given by rule report (workflow.layout)
    expected = {"metrics": "n.json", "per_class": "n.csv", "val_metrics": ["t.json"]}
    expected |= {"val_metrics_no_tta": ["nv.json"]}
    assert inputs.no_tta == (expected if tta else None)
