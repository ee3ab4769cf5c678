"""Tests for segpipe.report and segpipe.plots on small fake pipeline outputs."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from report_inputs import CLASSES, GALLERY_SIZE, N_IMAGES, report_inputs

from segpipe.report import NOT_A_CHECKOUT, build_report


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    """Keyword arguments for build_report, with every input written under tmp_path."""
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
    build_report(out, tmp_path / "report" / "figures", **inputs)
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


def test_missing_optional_inputs_are_shown_as_na(tmp_path, inputs):
    inputs["val_metrics_json"] = tmp_path / "nowhere" / "val_metrics.json"
    inputs["benchmarks"] = {"train": tmp_path / "nowhere" / "train.tsv", "predict": None}

    tables = _tables(_build(tmp_path, inputs))

    overall = {row[0]: row[1:] for row in tables["overall-metrics"][1:]}
    assert overall["val"] == ["n/a"] * 5
    assert overall["test"][2] == "0.712"
    assert tables["benchmarks"][1:] == [["train", "n/a", "n/a", "n/a"], ["predict"] + ["n/a"] * 3]


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
