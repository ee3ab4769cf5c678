"""segpipe.data.image_files: which files of the inputs are predicted and under which names,
without torch (the DAG process lists infer.images with it)."""

from __future__ import annotations

import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from segpipe.data.image_files import InferError, OutputClashError, find_images, walk_inputs


def test_files_below_the_folder_each_once_hidden_ones_left_out(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.jpg", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert find_images([tmp_path, tmp_path / "b.png"]) == [
        tmp_path / "b.png",
        tmp_path / "sub/a.jpg",
    ]
    named, left_out = walk_inputs([tmp_path])
    assert [name for _, name in named] == ["b", "sub/a"]
    assert [path.name for path, _ in left_out] == [".hidden.png"]


@pytest.mark.parametrize(
    "names",
    [("x.jpg", "x.png"), ("X.png", "x.jpg"), (unicodedata.normalize("NFD", "é.png"), "é.jpg")],
)
def test_two_files_of_one_name_are_refused_naming_both(tmp_path: Path, names) -> None:
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    if len(list(tmp_path.iterdir())) < 2:
        pytest.skip("the file system folds these names into one file")
    with pytest.raises(OutputClashError, match="would be predicted into the same file"):
        find_images([tmp_path])


def test_no_files_or_a_missing_input_is_an_infer_error(tmp_path: Path) -> None:
    with pytest.raises(InferError, match="no images in"):
        find_images([tmp_path])
    with pytest.raises(InferError, match="no such file or folder"):
        find_images([tmp_path / "missing"])


def test_listing_files_imports_no_torch() -> None:
    code = "import sys, segpipe.data.image_files; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
