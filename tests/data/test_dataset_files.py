"""Files that the indexing of a folder dataset meets besides plain image and mask files: files in
sub-folders (reported, not read), hidden folders, broken symbolic links and their neighbours
(links to folders, link loops, FIFOs, sockets, unreadable files), and the remap fingerprint that
must change with each of them."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from segpipe.data.dataset_layouts import dataset_files, index_dataset, is_lost_pair
from segpipe.data.verify import verify_dataset

from helpers.remap import half_mask, run_remap, solid

SIZE = 16


def pair(root: Path, stem: str, color=(200, 0, 0)) -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    Image.fromarray(solid(color, SIZE)).save(root / "images" / f"{stem}.png")
    Image.fromarray(half_mask(SIZE)).save(root / "masks" / f"{stem}.png")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(4):
        pair(root, f"a{i}", (i * 40, 0, 0))
    return root


def quarantined(root: Path) -> dict[str, str]:
    _, rows = index_dataset("folder", root)
    return {os.path.relpath(f, root): p for f, p in rows}


def test_files_in_sub_folders_are_quarantined_naming_the_folder(data, caplog):
    for rel in ("images/extra/b.png", "images/extra/deeper/c.png", "masks/old/a0.png"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(half_mask(SIZE)).save(data / rel)
    with caplog.at_level(logging.WARNING, logger="segpipe"):
        frame, rows = index_dataset("folder", data)
    assert sorted(frame["id"]) == ["a0", "a1", "a2", "a3"]
    problems = {os.path.relpath(f, data): p for f, p in rows}
    assert set(problems) == {"images/extra/b.png", "images/extra/deeper/c.png", "masks/old/a0.png"}
    assert problems["images/extra/b.png"] == (
        f"in sub-folder 'extra/': segpipe reads only the top level of {data / 'images'}; "
        "move it up or point dataset.images_dir at the sub-folder"
    )
    assert problems["images/extra/deeper/c.png"].startswith("in sub-folder 'extra/deeper/'")
    assert "dataset.masks_dir" in problems["masks/old/a0.png"]
    assert not any(is_lost_pair(p) for p in problems.values())  # not lost pairs
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(w.startswith("1 file(s) in sub-folder 'extra/' not read") for w in warnings)
    assert any(w.startswith("1 file(s) in sub-folder 'extra/deeper/'") for w in warnings)


def test_verify_lists_files_in_sub_folders(data):
    (data / "images" / "sub").mkdir()
    Image.fromarray(solid((1, 2, 3), SIZE)).save(data / "images" / "sub" / "x.png")
    summary = verify_dataset(data, table={0: 0, 255: 1})
    assert [Path(p["file"]).name for p in summary["problems"]] == ["x.png"]
    assert "in sub-folder 'sub/'" in summary["problems"][0]["problem"]
    assert not summary["ok"]


def test_sub_folder_files_do_not_count_towards_the_fraction(data, tmp_path):
    (data / "images" / "sub").mkdir()
    for i in range(10):
        (data / "images" / "sub" / f"n{i}.png").write_bytes(b"x")
    index, _ = run_remap(data, tmp_path / "out", max_quarantine_fraction=0.0, threads=1)
    assert len(index) == 4
    assert len(pd.read_csv(tmp_path / "out" / "quarantine.csv")) == 10


@pytest.mark.parametrize("name", [".git", ".ipynb_checkpoints", "__MACOSX"])
def test_a_hidden_folder_is_one_row_not_walked(data, name):
    hidden = data / "images" / name
    (hidden / "objects" / "ab").mkdir(parents=True)
    for i in range(5):
        (hidden / "objects" / "ab" / f"{i}").write_bytes(b"blob")
    (hidden / "a0.png").write_bytes(b"x")
    rows = quarantined(data)
    assert rows == {f"images/{name}": "hidden folder (e.g. .git, __MACOSX), not data: not read"}


def test_a_hidden_folder_inside_a_sub_folder_is_one_row(data):
    (data / "images" / "sub" / ".ipynb_checkpoints").mkdir(parents=True)
    (data / "images" / "sub" / ".ipynb_checkpoints" / "a-checkpoint.png").write_bytes(b"x")
    (data / "images" / "sub" / "b.png").write_bytes(b"x")
    rows = quarantined(data)
    assert set(rows) == {"images/sub/.ipynb_checkpoints", "images/sub/b.png"}
    assert rows["images/sub/.ipynb_checkpoints"].startswith("hidden folder")


def test_a_dangling_image_link_is_quarantined_and_its_mask_says_why(data):
    (data / "images" / "a0.png").unlink()
    (data / "images" / "a0.png").symlink_to("/nowhere/a0.png")
    frame, rows = index_dataset("folder", data)
    problems = {os.path.relpath(f, data): p for f, p in rows}
    assert "a0" not in set(frame["id"])
    assert problems["images/a0.png"] == (
        "broken symbolic link (points to /nowhere/a0.png): its target does not exist"
    )
    assert problems["masks/a0.png"] == (
        "its image a0.png cannot be read: broken symbolic link (points to /nowhere/a0.png): "
        "its target does not exist"
    )
    assert [is_lost_pair(problems[k]) for k in ("images/a0.png", "masks/a0.png")] == [False, True]


def test_a_dangling_mask_link_is_quarantined_and_its_image_says_why(data):
    (data / "masks" / "a1.png").unlink()
    (data / "masks" / "a1.png").symlink_to("gone.png")
    problems = quarantined(data)
    assert problems["masks/a1.png"].startswith("broken symbolic link (points to gone.png)")
    assert problems["images/a1.png"].startswith("its mask a1.png cannot be read: broken symbolic")


def test_link_neighbours_are_each_one_clear_row(data, tmp_path):
    images = data / "images"
    (tmp_path / "elsewhere").mkdir()
    (images / "to_folder.png").symlink_to(tmp_path / "elsewhere")
    (images / "loop.png").symlink_to(images / "loop.png")
    os.mkfifo(images / "pipe.png")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(images / "sock.png"))
        problems = quarantined(data)  # returns: nothing opens the FIFO
    assert problems["images/to_folder.png"].startswith("symbolic link to a folder (points to ")
    assert problems["images/loop.png"].startswith("symbolic link loop (points to ")
    assert problems["images/pipe.png"] == "not a regular file (a FIFO (named pipe)): not read"
    assert problems["images/sock.png"] == "not a regular file (a socket): not read"
    assert len(problems) == 4


def test_a_link_to_a_good_file_is_read(data, tmp_path):
    outside = tmp_path / "outside.png"
    Image.fromarray(solid((9, 9, 9), SIZE)).save(outside)
    (data / "images" / "a2.png").unlink()
    (data / "images" / "a2.png").symlink_to(outside)
    frame, rows = index_dataset("folder", data)
    assert "a2" in set(frame["id"]) and rows == []


def test_an_unreadable_file_is_a_clear_row(data, monkeypatch):
    """Tests run as root, whom chmod 000 does not stop: the permission error is simulated where
    the image is opened."""
    import segpipe.data.images

    real_open = segpipe.data.images.Image.open

    def refuse(path, *args, **kwargs):
        if Path(path).name == "a3.png" and "images" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(segpipe.data.images.Image, "open", refuse)
    summary = verify_dataset(data, table={0: 0, 255: 1})
    assert [(Path(p["file"]).name, p["problem"]) for p in summary["problems"]] == [
        (
            "a3.png",
            f"unreadable image (PermissionError: [Errno 13] Permission denied: "
            f"'{data / 'images' / 'a3.png'}')",
        )
    ]


def test_fingerprint_counts_nested_files_links_and_hidden_folders(data):
    def fingerprint():
        return dataset_files("folder", data).fingerprint()

    before = fingerprint()
    (data / "images" / "sub").mkdir()
    (data / "images" / "sub" / "b.png").write_bytes(b"x")
    nested = fingerprint()
    assert nested != before
    (data / "images" / "dead.png").symlink_to("/nowhere")
    linked = fingerprint()
    assert linked != nested
    (data / "masks" / ".git").mkdir()
    (data / "masks" / ".git" / "HEAD").write_bytes(b"ref")
    hidden = fingerprint()
    assert hidden != linked
    (data / "masks" / ".git" / "index").write_bytes(b"changed")  # not walked: no rerun
    assert fingerprint() == hidden
    (data / "images" / "sub" / "b.png").unlink()
    assert fingerprint() != hidden


def test_newest_file_is_never_a_link_that_cannot_be_an_input(data):
    os.utime(data / "images" / "a0.png", ns=(3 * 10**18, 3 * 10**18))
    (data / "images" / "z.png").symlink_to("/nowhere")
    os.mkfifo(data / "images" / "pipe")
    assert dataset_files("folder", data).newest() == [str(data / "images" / "a0.png")]


def test_hidden_folder_not_walked_for_the_fingerprint(data):
    (data / "images" / ".git" / "objects").mkdir(parents=True)
    (data / "images" / ".git" / "objects" / "x").write_bytes(b"x")
    paths = [p for p, _, _ in dataset_files("folder", data).entries]
    assert str(data / "images" / ".git") in paths
    assert not any("objects" in p for p in paths)
