"""The predictions folder's layout (segpipe.data.predictions): names kept as given below each
folder, names that would leave it refused, and the layout spelled in one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segpipe.data import predictions

from helpers.repo import REPO

NAMES = ["x", "a/x", "a/b/x", "x.tar", "with space", "ünïcødé/名前", "dots.in.dir/x.y"]


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


LAYOUT_WORDS = {"masks", "overlays", "probabilities", "summary.csv"}
# data/dataset_layouts.py names a dataset's masks/ folder (its input), not the predictions'.
LAYOUT_EXEMPT = {"data/predictions.py", "data/dataset_layouts.py"}


def _layout_literals(path: Path) -> list[str]:
    """String constants of a module (docstrings, dictionary keys and subscripts aside: a
    fingerprint's ``fp["masks"]`` section is no folder) that spell a predictions folder's
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
    docstrings |= {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    docstrings |= {
        id(key) for node in ast.walk(tree) if isinstance(node, ast.Dict) for key in node.keys
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
