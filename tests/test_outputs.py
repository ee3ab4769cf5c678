"""The outputs fault family: no command of segpipe overwrites or deletes what it did not write.

An output that is, holds or lies inside what a command reads is refused before any work, through
links and other spellings; ``--overwrite`` replaces only segpipe's own outputs; a write the disk
refuses is one line with exit status 3 and leaves the earlier output as it was. Each command
runs in this process with a tiny trained checkpoint; the property-based tests draw trees of
inputs, outputs, links and flags and check that no file outside segpipe's own outputs changes.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from segpipe.cli import main
from segpipe.data.summary import is_summary_file
from segpipe.inference import folder
from segpipe.inference.onnx import export_onnx, is_export
from segpipe.outputs import (
    MANIFEST,
    OutputError,
    Read,
    check_clear,
    check_folder,
    listed_outputs,
    path_option_problems,
    relation,
)

from helpers.filesystems import digests, fill, remount_read_only, tmpfs
from helpers.repo import copy_workflow, snakemake
from helpers.train import TINY, tiny_splits
from helpers.train import train as train_tiny


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """One epoch of a tiny UNet (1.5 MB): copied into each test's tree."""
    data = tiny_splits(tmp_path_factory.mktemp("data"), n_train=4)
    threads = torch.get_num_threads()
    _, paths = train_tiny(data, tmp_path_factory.mktemp("model"), epochs=1, **TINY)
    torch.set_num_threads(threads)
    return paths["best_path"]


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory) -> Path:
    return export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")


def image(path: Path, size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path, format="PNG")
    return path


def segpipe(capsys, *args) -> tuple[int, str, str]:
    """``segpipe ARGS`` in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def refused(result: tuple[int, str, str], message: str) -> bool:
    code, _, err = result
    return (
        code == 2
        and message in err
        and len(err.strip().splitlines()) == 1
        and "Traceback" not in err
    )


# --- how an output stands to what is read ---------------------------------------------------


def test_relations_hold_through_links_and_other_spellings(tmp_path) -> None:
    data = image(tmp_path / "in" / "images" / "a.png").parent.parent
    (tmp_path / "link").symlink_to(data)
    os.link(data / "images" / "a.png", tmp_path / "hard.png")
    real = Path(os.path.realpath(data))
    for spelled in (data, Path(f"{data}/"), data / "images" / "..", tmp_path / "link"):
        assert relation(Path(os.path.realpath(spelled)), real) == "is"
    assert relation(real.parent, real) == "holds"
    assert relation(real / "images" / "new", real) == "lies inside"
    assert relation(tmp_path / "hard.png", real / "images" / "a.png") == "is"  # same inode
    assert relation(tmp_path / "other", real) is None
    with pytest.raises(OutputError, match="is the checkpoint .* hard link"):
        check_clear(
            tmp_path / "hard.png", "--out", [Read(data / "images" / "a.png", "the checkpoint")]
        )


def test_a_link_loop_a_dangling_link_and_the_root_are_refused(tmp_path, monkeypatch) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "to_loop").symlink_to(tmp_path / "loop")
    monkeypatch.chdir(image(tmp_path / "work" / "a.png").parent)
    writer = {"writer": "segpipe predict", "overwrite": True}
    for out, message in [
        (tmp_path / "loop", "a loop of symbolic links"),
        (tmp_path / "to_loop", "a loop of symbolic links"),
        (tmp_path / "loop" / "sub", "a loop of symbolic links"),
        (tmp_path / "dangling", "which does not exist"),
        (Path("/"), "holds the working directory"),
        (Path("."), "is the working directory"),
        (Path(".."), "holds the working directory"),
    ]:
        with pytest.raises(OutputError, match=message):
            check_folder(out, "--out", **writer)


# --- segpipe predict: inputs, checkpoint and output folder -----------------------------------


@pytest.fixture
def world(tmp_path, checkpoint, onnx_file, monkeypatch) -> Path:
    """IN/images with two images, run/ with best.pt and model.onnx, an empty folder and a
    folder of the user's; the working directory is ``work/``."""
    image(tmp_path / "IN" / "images" / "a.png")
    image(tmp_path / "IN" / "images" / "sub" / "b.png")
    (tmp_path / "IN" / "notes.txt").write_text("the user's")
    (tmp_path / "run").mkdir()
    shutil.copy(checkpoint, tmp_path / "run" / "best.pt")
    shutil.copy(onnx_file, tmp_path / "run" / "model.onnx")
    (tmp_path / "empty").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "thesis.tex").write_text("the user's")
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize(
    ("model", "inputs", "out", "message"),
    [
        ("run/best.pt", ["IN/images"], "IN", "holds the input folder"),
        ("run/best.pt", ["IN/images"], "IN/", "holds the input folder"),
        ("run/best.pt", ["IN/images"], "IN/images/..", "holds the input folder"),
        ("run/best.pt", ["IN/images"], "IN/images", "is the input folder"),
        ("run/best.pt", ["IN/images"], "IN/images/sub/../..", "holds the input folder"),
        ("run/best.pt", ["IN/images"], "IN/images/preds", "lies inside the input folder"),
        ("run/best.pt", ["IN/images/a.png"], "IN/images", "is the input folder"),
        ("run/best.pt", ["IN/images/a.png"], "IN", "holds the input folder"),
        ("run/best.pt", ["IN/images"], "run", "holds the model file"),
        ("--onnx run/model.onnx", ["IN/images"], "run", "holds the model file"),
        ("run/best.pt", ["IN/images"], "link_to_IN", "holds the input folder"),
        ("run/best.pt", ["link_to_IN/images"], "IN", "holds the input folder"),
        ("run/best.pt", ["IN/images"], "link_to_run", "holds the model file"),
        ("run/best.pt", ["IN/images"], ".", "holds the model file"),
        ("run/best.pt", ["IN/images"], "work/..", "holds the model file"),
    ],
)
def test_predict_refuses_an_output_that_is_holds_or_lies_in_what_it_reads(
    world, capsys, model, inputs, out, message, overwrite
) -> None:
    """``-o IN --overwrite`` deleted the input folder and every file beside it, and ``-o run
    --overwrite`` the checkpoint it had just used, exit 0: now each is one line, exit 2,
    before any work, and no file anywhere changes."""
    (world / "link_to_IN").symlink_to(world / "IN")
    (world / "link_to_run").symlink_to(world / "run")
    os.chdir(world)
    before = digests(world)
    result = segpipe(
        capsys, "predict", *model.split(), *inputs, "-o", out, *(["--overwrite"] * overwrite)
    )
    assert refused(result, message), result
    assert digests(world) == before


def test_overwrite_follows_a_link_only_to_an_output_of_segpipe_predict(world, capsys) -> None:
    """``-o LINK --overwrite``: every image predicted, then a traceback (``rmtree on a symbolic
    link``), exit 1. Now the folder it points to is replaced when segpipe predict wrote it, a
    link to a link too, and the link stays; a folder of the user's behind it is refused."""
    args = ["predict", "run/best.pt", "IN/images"]
    os.chdir(world)
    assert segpipe(capsys, *args, "-o", "preds")[0] == 0
    Path("link").symlink_to(world / "preds")
    Path("link_to_link").symlink_to("link")
    for out in ("link", "link_to_link"):
        (world / "IN" / "images" / "a.png").unlink()
        image(world / "IN" / "images" / f"{out}.png")
        code, _, err = segpipe(capsys, *args, "-o", out, "--overwrite")
        assert code == 0, err
        assert Path(out).is_symlink() and (world / "preds" / "masks" / f"{out}.png").is_file()
        assert not (world / "preds" / "masks" / "a.png").exists()
        image(world / "IN" / "images" / "a.png")
    Path("to_empty").symlink_to(world / "empty")
    assert segpipe(capsys, *args, "-o", "to_empty")[0] == 0
    assert (world / "empty" / MANIFEST).is_file() and Path("to_empty").is_symlink()
    Path("to_mine").symlink_to(world / "work")
    before = digests(world)
    result = segpipe(capsys, *args, "-o", "to_mine", "--overwrite")
    assert refused(result, "no .segpipe-outputs.json of segpipe predict"), result
    assert digests(world) == before


def test_a_file_added_while_predicting_is_not_deleted_by_overwrite(
    world, capsys, monkeypatch
) -> None:
    """--overwrite checks the folder again before replacing it: a file of the user's that
    came while the images were being predicted stops the replacement, and stays."""
    os.chdir(world)
    assert segpipe(capsys, "predict", "run/best.pt", "IN/images", "-o", "preds")[0] == 0
    real_check = folder.check_output_dir
    calls = []

    def user_saves_notes_meanwhile(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second look, after predicting
            (world / "preds" / "notes.txt").write_text("the user's")
        return real_check(*args, **kwargs)

    monkeypatch.setattr(folder, "check_output_dir", user_saves_notes_meanwhile)
    result = segpipe(capsys, "predict", "run/best.pt", "IN/images", "-o", "preds", "--overwrite")
    assert refused(result, "1 file(s) that segpipe predict did not write (notes.txt)"), result
    assert (world / "preds" / "notes.txt").read_text() == "the user's"
    assert (world / "preds" / MANIFEST).is_file()
    assert sorted(p.name for p in world.iterdir() if p.name.startswith(".")) == []


def test_a_device_or_fifo_as_output_is_refused_without_reading_it(world, capsys) -> None:
    """``export -o /dev/full`` read the device to tell whether it was an ONNX file, without
    end, until the kernel killed it."""
    os.chdir(world)
    os.mkfifo("fifo")
    for args in (
        ["export", "run/best.pt", "-o", "/dev/full"],
        ["export", "run/best.pt", "-o", "fifo"],
        ["verify", "IN", "--table", "0=0", "--json", "/dev/zero"],
        ["predict", "run/best.pt", "IN/images", "-o", "/dev/null"],
    ):
        message = "is a file; give a folder" if args[0] == "predict" else "not a regular file"
        assert refused(segpipe(capsys, *args), message), args


# --- segpipe export --------------------------------------------------------------------------


def test_export_refuses_to_overwrite_what_it_did_not_write(world, capsys) -> None:
    """``export ck.pt -o ck.pt`` overwrote the checkpoint with the ONNX model, then failed to
    read it; ``-o`` onto any file replaced it. Now each is one line, exit 2, before any
    work."""
    os.chdir(world)
    os.link("run/best.pt", "hard.pt")
    Path("soft.pt").symlink_to(world / "run" / "best.pt")
    Path("dangling.onnx").symlink_to(world / "nowhere.onnx")
    image(world / "photo.png")
    before = digests(world)
    for out, message in [
        ("run/best.pt", "is the checkpoint"),
        ("hard.pt", "is the checkpoint run/best.pt (the same file"),
        ("soft.pt", "is the checkpoint"),
        ("run/../run/best.pt", "is the checkpoint"),
        ("photo.png", "a file that is not an ONNX file of segpipe export"),
        ("work/thesis.tex", "a file that is not an ONNX file of segpipe export"),
        ("run", "holds the checkpoint"),
        ("empty", "is a folder"),
        ("dangling.onnx", "which does not exist"),
        ("photo.png/model.onnx", "is a file, not a folder"),
    ]:
        assert refused(segpipe(capsys, "export", "run/best.pt", "-o", out), message), out
    assert digests(world) == before


def test_export_replaces_an_earlier_export_and_follows_a_link_to_one(world, capsys) -> None:
    os.chdir(world)
    Path("latest.onnx").symlink_to(world / "run" / "model.onnx")
    for out in ("run/model.onnx", "latest.onnx", None):
        code, stdout, err = segpipe(capsys, "export", "run/best.pt", *(["-o", out] if out else []))
        assert code == 0 and "wrote" in stdout, err
    assert Path("latest.onnx").is_symlink()
    assert sorted(p.name for p in (world / "run").iterdir()) == ["best.pt", "model.onnx"]


# --- segpipe verify --json ------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path) -> Path:
    root = tmp_path / "cells"
    (root / "masks").mkdir(parents=True)
    for name in ("a", "b"):
        image(root / "images" / f"{name}.png")
        Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "masks" / f"{name}.png")
    return root


def test_verify_json_stays_out_of_the_dataset_and_replaces_only_a_summary(
    dataset, tmp_path, capsys
) -> None:
    args = ["verify", dataset, "--table", "0=0,255=1"]
    (tmp_path / "notes.json").write_text('{"mine": true}')
    before = digests(tmp_path)
    for out, message in [
        (dataset / "summary.json", "lies inside the dataset"),
        (dataset / "images" / "a.png", "lies inside the dataset"),
        (dataset, "is the dataset"),
        (tmp_path / "notes.json", "a file that is not a summary of segpipe verify --json"),
    ]:
        assert refused(segpipe(capsys, *args, "--json", out), message), out
    assert digests(tmp_path) == before
    assert segpipe(capsys, *args, "--json", tmp_path / "summary.json")[0] == 0
    assert segpipe(capsys, *args, "--json", tmp_path / "summary.json")[0] == 0  # its own


# --- writes the disk refuses ----------------------------------------------------------------


def one_line_exit_3(result: tuple[int, str, str], path: Path, cause: str) -> bool:
    code, _, err = result
    lines = err.strip().splitlines()
    return code == 3 and len(lines) == 1 and f"cannot write {path}" in lines[0] and cause in err


def test_a_full_disk_is_exit_3_in_one_line_and_keeps_the_earlier_outputs(
    world, capsys, checkpoint
) -> None:
    """A full disk during predict or export ended in a traceback (and predict's exit 1 was the
    code of "some inputs skipped")."""
    os.chdir(world)
    big = image(world / "big" / "noise.png", (300, 300))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)).save(big)
    with tmpfs(world / "disk", "4m") as disk:
        assert segpipe(capsys, "predict", "run/best.pt", "IN/images", "-o", disk / "preds")[0] == 0
        result = segpipe(capsys, "export", "run/best.pt", "-o", disk / "model.onnx")
        assert result[0] == 0, result
        fill(disk)
        earlier = digests(disk)
        result = segpipe(
            capsys, "predict", "run/best.pt", "big", "-o", disk / "preds", "--overwrite"
        )
        assert one_line_exit_3(result, disk / "preds", "no space left on the device"), result
        result = segpipe(capsys, "export", "run/best.pt", "-o", disk / "model.onnx")
        assert one_line_exit_3(result, disk / "model.onnx", "no space left on the device"), result
        assert digests(disk) == earlier
        remount_read_only(disk)
        for args in (
            ["predict", "run/best.pt", "IN/images", "-o", disk / "new"],
            ["export", "run/best.pt", "-o", disk / "new.onnx"],
            ["verify", "IN", "--table", "0=0", "--json", disk / "summary.json"],
        ):
            code, _, err = segpipe(capsys, *args)
            assert code == 3 and "read-only file system" in err, err
            assert len(err.strip().splitlines()) == 1
        assert digests(disk) == earlier


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_a_refused_write_of_a_prediction_is_exit_3_where_no_tmpfs_can_be_mounted(
    world, capsys, monkeypatch, code
) -> None:
    """The same, with the refusal injected into the image writer (for machines where the
    tests may not mount a file system)."""
    os.chdir(world)
    assert segpipe(capsys, "predict", "run/best.pt", "IN/images", "-o", "preds")[0] == 0
    earlier = digests(world)

    def refuse(self, fp, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(fp))

    monkeypatch.setattr(Image.Image, "save", refuse)
    result = segpipe(capsys, "predict", "run/best.pt", "IN/images", "-o", "preds", "--overwrite")
    monkeypatch.undo()
    assert result[0] == 3 and f"cannot write {world / 'preds' / 'masks' / 'a.png'}" in result[2], (
        result
    )
    assert len(result[2].strip().splitlines()) == 1
    assert digests(world) == earlier


# --- property-based: random trees of inputs, outputs, links and flags ------------------------

LINK_TARGETS = ["IN", "IN/images", "IN/images/a.png", "run", "run/best.pt", "run/model.onnx"]
LINK_TARGETS += ["prev", "prev/summary.csv", "mine", "empty", "work", "nowhere", "SELF"]
PLACES = ["links", "prev", "empty", "IN/images"]
OUTS = ["new", "new.onnx", "summary.json", "IN", "IN/", "IN/images", "IN/images/sub"]
OUTS += ["IN/images/..", "IN/images/a.png", "IN/notes.txt", "IN/masks", "run", "run/best.pt"]
OUTS += ["run/model.onnx", "prev", "prev/", "prev/summary.csv", "mine", "empty", "work"]
OUTS += [f"{place}/l{i}" for place in PLACES for i in range(3)] + ["links/l0/sub"]
OUTS += ["IN/new", "IN/images/new", "run/new", "links/l1/new"]
KEY_OUTS = ["mine", "work", "prev", "empty", "IN", "run", "links/l0", "prev/l0"]  # drawn more

links = st.lists(
    st.tuples(
        st.sampled_from(PLACES),
        st.sampled_from(["symbolic", "relative", "hard"]),
        st.sampled_from(LINK_TARGETS),
    ),
    max_size=4,
)


@pytest.fixture(scope="module")
def template(checkpoint, onnx_file, tmp_path_factory) -> Path:
    """A tree to copy for each example: a dataset ``IN`` (images, masks, notes), a run's
    checkpoint and ONNX file, an earlier output of segpipe predict, a folder of the user's, an
    empty folder, and the working directory ``work``."""
    root = tmp_path_factory.mktemp("template")
    for name in ("a", "sub/b"):
        image(root / "IN" / "images" / f"{name}.png")
    (root / "IN" / "masks").mkdir()
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(root / "IN" / "masks" / "a.png")
    (root / "IN" / "notes.txt").write_text("the user's")
    (root / "run").mkdir()
    shutil.copy(checkpoint, root / "run" / "best.pt")
    shutil.copy(onnx_file, root / "run" / "model.onnx")
    assert (
        main(["predict", str(checkpoint), str(root / "IN" / "images"), "-o", str(root / "prev")])
        == 0
    )
    image(root / "mine" / "photo.png")
    for name in ("empty", "links", "work"):
        (root / name).mkdir()
    (root / "work" / "thesis.tex").write_text("the user's")
    return root


def make_links(world: Path, drawn: list[tuple[str, str, str]]) -> None:
    """``place/l<i>``: a symbolic link (absolute or relative) or a hard link to a target."""
    for i, (place, kind, target) in enumerate(drawn):
        link = world / place / f"l{i}"
        to = link if target == "SELF" else world / target
        if kind == "hard" and to.is_file() and not to.is_symlink():
            os.link(to, link)
        elif kind == "relative":
            link.symlink_to(os.path.relpath(to, link.parent))
        else:
            link.symlink_to(to)


def may_change(world: Path, out: str, command: str) -> tuple[Path, set[str]]:
    """Where ``command -o out`` may write (the real path), and the files there before that it
    may replace: an earlier output of its own, nothing else."""
    try:
        real = Path(os.path.realpath(out, strict=False))
    except OSError:
        return world / "nowhere-to-write", set()
    own: set[str] = set()
    if command == "predict" and real.is_dir():
        listed = listed_outputs(real, "segpipe predict") or set()
        own = {str(real / name) for name in [*listed, MANIFEST]}
    elif (
        command == "export"
        and real.is_file()
        and is_export(real)
        or command == "verify"
        and real.is_file()
        and is_summary_file(real)
    ):
        own = {str(real)}
    return real, own


def kept_clear(command: str, model: str, inputs: list[str]) -> list[tuple[Path, bool]]:
    """(real path, whether outputs may lie inside it) of what the command reads: the model
    file and the input folders and files of predict (outputs may go beside an input file, not
    into its folder itself), the dataset of verify, the checkpoint of export."""
    real = [Path(os.path.realpath(p)) for p in inputs]
    model_file = Path(os.path.realpath(model.split()[-1]))
    if command == "verify":
        return [(Path(os.path.realpath("../IN")), False)]
    if command == "export":
        return [(model_file.with_name("best.pt"), False)]
    return (
        [(model_file, False)]
        + [(p, False) if p.is_dir() else (p.parent, True) for p in real]
        + [(p, False) for p in real if not p.is_dir()]
    )


def assert_clear(real: Path, reads: list[tuple[Path, bool]]) -> None:
    """The output written is none of what was read, holds none of it, and lies in none of it
    (except where outputs may)."""
    for read, inside_ok in reads:
        assert real != read and read not in real.parents or inside_ok and real != read, read
        assert real not in read.parents, read


def command_line(
    command: str, model: str, inputs: list[str], out: str, overwrite: bool
) -> list[str]:
    if command == "predict":
        flag = ["--overwrite"] if overwrite else []
        return ["predict", *model.split(), *inputs, "-o", out, *flag]
    if command == "export":
        return ["export", model.split()[-1].replace("model.onnx", "best.pt"), "-o", out]
    return ["verify", "../IN", "--table", "0=0,255=1", "--json", out]


def case(command: str, out: str, overwrite: bool = True, **drawn):
    """An example every run tries: the cases of the issue that first showed this family."""
    defaults = {"model": "../run/best.pt", "inputs": ["../IN/images"], "drawn": []}
    return example(command=command, out=out, overwrite=overwrite, **{**defaults, **drawn})


@case("predict", "../IN")
@case("predict", "../run")
@case("predict", "../mine")
@case("predict", "../prev")
@case("predict", "../links/l0", drawn=[("links", "relative", "prev")])
@case("predict", "../links/l0", drawn=[("links", "symbolic", "mine")])
@case("predict", "../prev", drawn=[("prev", "hard", "run/best.pt")])
@case("export", "../run/best.pt")
@case("export", "../IN/images/a.png")
@case("export", "../links/l0", drawn=[("links", "hard", "run/best.pt")])
@case("verify", "../IN/masks/a.png")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    command=st.sampled_from(["predict", "predict", "export", "verify"]),
    model=st.sampled_from(["../run/best.pt", "--onnx ../run/model.onnx", "../links/l0"]),
    inputs=st.lists(
        st.sampled_from(["../IN/images", "../IN/images/a.png", "../IN", "../links/l1"]),
        min_size=1,
        max_size=2,
    ),
    out=st.one_of(
        st.sampled_from([f"../{o}" for o in KEY_OUTS]),
        st.sampled_from([*(f"../{o}" for o in OUTS), ".", "..", "../links/../IN"]),
    ),
    overwrite=st.booleans(),
    drawn=links,
)
def test_no_file_outside_segpipes_own_outputs_changes(
    template, command, model, inputs, out, overwrite, drawn
) -> None:
    """Whatever the tree, the links and the flags: the command ends with an exit status of the
    documented ones and at most one line of error, and every file that changed, appeared or
    went is in the folder or file it was told to write, and was, if it existed before, an
    output of the same command (listed in its manifest, an ONNX export, a verify summary)."""
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(os.path.realpath(tmp)) / "world"
        shutil.copytree(template, world, symlinks=True)
        make_links(world, drawn)
        cwd = os.getcwd()
        os.chdir(world / "work")
        try:
            real, own = may_change(world, out, command)
            reads = kept_clear(command, model, inputs)
            before = digests(world)
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()) as err,
            ):
                try:
                    code = main(command_line(command, model, inputs, out, overwrite))
                except SystemExit as exc:  # argparse: a model that is no file, and the like
                    code = exc.code
            after = digests(world)
        finally:
            os.chdir(cwd)
    event(f"{command} exit {code}")
    assert code in (0, 1, 2, 3), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if code in (2, 3):
        assert len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    if code in (0, 1):
        assert_clear(real, reads)
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    for path in changed:
        assert path == str(real) or Path(path).is_relative_to(real), (path, out, code)
        assert path not in before or path in own, (path, out, code)


# --- the pipeline: paths that config options name -------------------------------------------


def test_what_the_pipeline_writes_is_kept_apart_from_what_it_reads(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "data")
    written = {"results/": "results", "config option 'pretrained.cache'": "resources/pretrained"}
    assert path_option_problems(written, {"config option 'dataset.root'": "data"}) == []
    for root, message in [
        (".", "results/ 'results' lies inside config option 'dataset.root' '.'"),
        ("results/mine", "results/ 'results' holds config option 'dataset.root' 'results/mine'"),
        ("resources", "'pretrained.cache' 'resources/pretrained' lies inside config option"),
    ]:
        problems = path_option_problems(written, {"config option 'dataset.root'": root})
        assert any(message in problem for problem in problems), problems
    cache = {"config option 'pretrained.cache'": "link/images/weights"}
    problems = path_option_problems(cache, {"config option 'infer.images'": "data/images"})
    assert len(problems) == 1 and "lies inside config option 'infer.images'" in problems[0]


@pytest.mark.slow
def test_a_dataset_that_holds_the_results_fails_before_any_job_runs(tmp_path) -> None:
    """dataset.root '.' (results/ would lie inside the dataset: every run would change it) and
    pretrained.cache inside the dataset are refused naming the options, before any job."""
    work = copy_workflow(tmp_path / "work")
    (work / "images").mkdir()
    for overrides, message in [
        (
            ["dataset={source: folder, root: .}"],
            "results/ 'results' lies inside config option 'dataset.root' '.'",
        ),
        (
            ["dataset={source: folder, root: data}", "pretrained={cache: data/weights}"],
            "config option 'pretrained.cache' 'data/weights' lies inside config option "
            "'dataset.root' 'data'",
        ),
    ]:
        args = ["--configfile", "config/test.yaml", "-n", "--config", *overrides]
        proc = snakemake(work, *args)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr, proc.stdout[-2000:]
        assert not (work / "results").exists()
