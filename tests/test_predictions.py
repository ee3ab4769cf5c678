"""The predictions folder's layout (segpipe.data.predictions), the one writer of a prediction
(segpipe.inference.writer), the one class-id mask reader (segpipe.data.masks) and the class
legend (segpipe.data.colors)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segpipe.data import predictions
from segpipe.data.colors import legend, overlay, palette
from segpipe.data.masks import MaskReadError, load_mask
from segpipe.inference.writer import write_prediction
from segpipe.logs import UserError

from conftest import REPO

NAMES = ["x", "a/x", "a/b/x", "x.tar", "with space", "ünïcødé/名前", "dots.in.dir/x.y"]
CLASSES = ["background", "cat", "dog"]


def probabilities(height: int = 32, width: int = 48) -> torch.Tensor:
    """Class probabilities whose argmax is a band of 16 columns per class (smooth enough for
    a JPEG overlay to stay close to its colours)."""
    ids = (torch.arange(width) // 16 % len(CLASSES)).expand(height, width)
    logits = torch.nn.functional.one_hot(ids, len(CLASSES)).permute(2, 0, 1).float() * 3
    return logits.softmax(0)


@pytest.mark.parametrize("name", NAMES)
def test_paths_keep_the_name_as_it_is_below_each_folder(tmp_path, name):
    assert predictions.mask_path(tmp_path, name) == tmp_path / "masks" / f"{name}.png"
    assert predictions.overlay_path(tmp_path, name) == tmp_path / "overlays" / f"{name}.jpg"
    assert predictions.probabilities_path(tmp_path, name) == (
        tmp_path / "probabilities" / f"{name}.npz"
    )
    assert predictions.summary_path(tmp_path) == tmp_path / "summary.csv"
    assert predictions.mask_name(name) == f"masks/{name}.png"


@pytest.mark.parametrize("name", ["", "/abs", "../x", "a/../x", "a//x", "./x", "a/"])
def test_a_name_that_leaves_the_folder_is_refused(tmp_path, name):
    for path in (predictions.mask_path, predictions.overlay_path, predictions.probabilities_path):
        with pytest.raises(ValueError, match="not a relative path"):
            path(tmp_path, name)


PART = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
    min_size=1,
    max_size=8,
).filter(lambda p: p not in (".", ".."))


@settings(max_examples=200, deadline=None)
@given(st.lists(PART, min_size=1, max_size=3))
def test_a_mask_name_reads_back_as_its_image_name(parts):
    name = "/".join(parts)
    assert predictions.name_of_mask(predictions.mask_name(name)) == name


def test_a_full_mask_path_reads_back_as_its_file_name():
    assert predictions.name_of_mask("/tmp/out/masks/a/x.y.png") == "x.y"
    assert predictions.name_of_mask(Path("masks") / "a" / "x.png") == "a/x"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("keep", [False, True])
def test_write_prediction_writes_mask_overlay_and_probabilities_when_asked(tmp_path, name, keep):
    p = probabilities()
    rgb = np.full((32, 48, 3), 120, dtype=np.uint8)
    mask_path = write_prediction(
        tmp_path, name, rgb, p, CLASSES, keep_probabilities=keep, overlay_alpha=0.4
    )
    expected = p.argmax(0).numpy().astype(np.uint8)
    assert mask_path == predictions.mask_path(tmp_path, name)
    assert np.array_equal(load_mask(mask_path), expected)
    with Image.open(predictions.overlay_path(tmp_path, name)) as shaded:
        assert shaded.format == "JPEG"
        got = np.asarray(shaded.convert("RGB"), dtype=int)
    want = overlay(rgb, expected, len(CLASSES), 0.4).astype(int)
    assert np.abs(got - want).mean() < 4  # JPEG, quality 90
    npz = predictions.probabilities_path(tmp_path, name)
    assert npz.exists() == keep
    if keep:
        with np.load(npz) as saved:
            assert saved["classes"].tolist() == CLASSES
            assert saved["probabilities"].dtype == np.uint8
            assert np.abs(saved["probabilities"] / 255 - p.numpy()).max() <= 0.5 / 255 + 1e-6
    left = [p.name for p in tmp_path.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert not left


def test_write_prediction_refuses_a_name_outside_the_folder(tmp_path):
    rgb = np.zeros((32, 48, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="not a relative path"):
        write_prediction(tmp_path / "out", "../escaped", rgb, probabilities(), CLASSES)
    assert not list(tmp_path.rglob("*.png"))


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    image.save(path)
    return path


def test_load_mask_reads_greyscale_palette_indices_and_one_bit(tmp_path):
    ids = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    assert np.array_equal(load_mask(save(tmp_path / "l.png", ids)), ids)
    indexed = Image.fromarray(ids, mode="P")
    indexed.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    indexed.save(tmp_path / "p.png")
    assert np.array_equal(load_mask(tmp_path / "p.png"), ids)  # indices, not colours
    bits = save(tmp_path / "b.png", ids.astype(bool))
    assert Image.open(bits).mode == "1"
    assert np.array_equal(load_mask(bits), (ids > 0).astype(np.uint8))


@pytest.mark.parametrize(
    ("kind", "array"),
    [
        ("RGB", np.zeros((2, 3, 3), dtype=np.uint8)),
        ("I;16", np.full((2, 3), 300, dtype=np.uint16)),
        ("F", np.full((2, 3), 1.5, dtype=np.float32)),
        ("LA", np.zeros((2, 3, 2), dtype=np.uint8)),
    ],
)
def test_load_mask_refuses_a_file_of_no_class_ids_naming_it(tmp_path, kind, array):
    path = tmp_path / f"mask {kind.replace(';', '')}.{'tif' if kind == 'F' else 'png'}"
    Image.fromarray(array).save(path)
    with pytest.raises(MaskReadError, match=f"{path}.*not a class-id mask.*mode {kind}"):
        load_mask(path)
    assert issubclass(MaskReadError, UserError)


def test_report_gallery_refuses_a_16_bit_prediction_instead_of_wrapping_it(tmp_path):
    from segpipe.reporting.run_report import _composite

    image = save(tmp_path / "image.png", np.zeros((4, 4, 3), dtype=np.uint8))
    truth = save(tmp_path / "truth.png", np.zeros((4, 4), dtype=np.uint8))
    pred = save(tmp_path / "pred.png", np.full((4, 4), 257, dtype=np.uint16))
    with pytest.raises(MaskReadError, match="pred.png"):
        _composite(image, truth, pred, 2, 255)


@pytest.mark.parametrize("count", [0, 1, 3, 12])
def test_legend_pairs_each_class_with_its_palette_colour(count):
    names = [f"class {i}" for i in range(count)]
    colours = palette(count)
    assert legend(names) == [
        {"name": name, "rgb": f"{r},{g},{b}"}
        for name, (r, g, b) in zip(names, colours.tolist(), strict=True)
    ]


def test_both_reports_use_the_one_legend():
    from segpipe.reporting import comparison, run_report

    assert run_report.legend is legend
    assert comparison.legend is legend


LAYOUT_WORDS = {"masks", "overlays", "probabilities", "summary.csv"}
# data/layouts.py names a dataset's masks/ folder (its input), not the predictions'.
LAYOUT_EXEMPT = {"data/predictions.py", "data/layouts.py"}


def _layout_literals(path: Path) -> list[str]:
    """String constants of a module (docstrings aside) that spell a predictions folder's
    sub-folder or file: ``"masks"``, ``"masks/..."``, ``"summary.csv"``..."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            text = node.value
            if text in LAYOUT_WORDS or text.startswith(("masks/", "overlays/", "probabilities/")):
                found.append(f"line {node.lineno}: {text!r}")
    return found


def test_the_predictions_layout_is_spelled_in_one_module():
    package = REPO / "src" / "segpipe"
    spelled = {
        path.relative_to(package).as_posix(): _layout_literals(path)
        for path in package.rglob("*.py")
        if path.relative_to(package).as_posix() not in LAYOUT_EXEMPT
    }
    assert {name: hits for name, hits in spelled.items() if hits} == {}


def test_evaluation_refuses_a_16_bit_prediction_instead_of_wrapping_it(tmp_path):
    from segpipe.evaluation.evaluate import evaluate_split

    truth = save(tmp_path / "truth.png", np.ones((4, 4), dtype=np.uint8))
    image = save(tmp_path / "image.png", np.zeros((4, 4, 3), dtype=np.uint8))
    manifest = tmp_path / "test.csv"
    manifest.write_text(f"id,image,mask,group,height,width\nx y.1,{image},{truth},g,4,4\n")
    pred = tmp_path / "predict" / "masks" / "x y.1.png"
    pred.parent.mkdir(parents=True)
    save(pred, np.full((4, 4), 257, dtype=np.uint16))  # 257 would wrap to class 1
    out = {
        name: tmp_path / f"{name}.csv"
        for name in ("per_class_csv", "confusion_csv", "confusion_normalized_csv", "per_image_csv")
    }
    with pytest.raises(MaskReadError, match=r"x y\.1\.png.*mode I;16"):
        evaluate_split(
            manifest,
            tmp_path / "predict",
            metrics_json=tmp_path / "m.json",
            classes=["a", "b"],
            **out,
        )
    assert not (tmp_path / "m.json").exists()
