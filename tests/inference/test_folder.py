"""Predicting new images: the inference engine (flips, resizing, sliding windows) and
``segpipe predict``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from segpipe.cli import main
from segpipe.evaluation.evaluate import confusion_matrix
from segpipe.evaluation.metrics import summarize
from segpipe.inference.engine import (
    flip_views,
    normalized,
    predict_resized,
    predict_sliding,
    tile_starts,
    with_tta,
)
from segpipe.inference.folder import (
    InferError,
    OutputClashError,
    Predictor,
    find_inputs,
    load_model,
    predict_files,
)
from segpipe.inference.predict_splits import PredictOptions, predict_split
from segpipe.models.checkpoints import load_checkpoint, save_checkpoint
from segpipe.models.model_input import ModelInput
from segpipe.outputs import MANIFEST
from segpipe.reporting.run_report import infer_gallery

from helpers.filesystems import digests
from helpers.repo import BIN
from helpers.train import CLASSES, make_pair, tiny_splits
from helpers.train import train as train_tiny

# --- the engine -----------------------------------------------------------------------------


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """A scorer whose output at a pixel depends on that pixel only: 2 classes."""
    a = x.mean(1, keepdim=True).sigmoid()
    return torch.cat([a, 1 - a], 1)


def ramp(x: torch.Tensor) -> torch.Tensor:
    """A scorer that is not flip-equivariant: class 0's probability grows left to right."""
    b, _, h, w = x.shape
    left = torch.linspace(0, 1, w).expand(b, 1, h, w)
    return torch.cat([left, 1 - left], 1)


def test_flip_views_are_every_combination() -> None:
    assert flip_views([]) == [()]
    assert flip_views(["hflip"]) == [(), (3,)]
    assert flip_views(["hflip", "vflip"]) == [(), (3,), (2,), (3, 2)]
    with pytest.raises(ValueError, match="unknown flips"):
        flip_views(["rot90"])


def test_flip_tta_averages_the_probabilities_flipped_back() -> None:
    x = torch.randn(2, 3, 5, 7)
    # A position-dependent scorer: the mean of the view and its flipped-back mirror.
    got = with_tta(ramp, ["hflip"])(x)
    assert torch.allclose(got, (ramp(x) + ramp(x.flip(3)).flip(3)) / 2)
    assert torch.allclose(got[:, 0], torch.full((2, 5, 7), 0.5))
    # A pixel-wise scorer is flip-equivariant: TTA changes nothing.
    assert torch.allclose(with_tta(pointwise, ["hflip", "vflip"])(x), pointwise(x), atol=1e-6)


def test_tiles_cover_the_axis_and_end_flush() -> None:
    assert tile_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert tile_starts(32, 32, 16) == [0]


@pytest.mark.parametrize(("height", "width"), [(33, 47), (20, 9), (130, 257)])
def test_sliding_window_keeps_the_size_and_blends_exactly(height: int, width: int) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    p = predict_sliding(rgb, pointwise, 32, overlap=0.5, batch_size=3)
    assert p.shape == (2, height, width)
    # Weighted means of the same per-pixel scores give the whole image's scores back.
    assert torch.allclose(p, pointwise(normalized(rgb))[0], atol=1e-5)


def test_resized_prediction_is_at_each_images_own_size() -> None:
    images = [np.zeros((33, 47, 3), np.uint8), np.zeros((40, 20, 3), np.uint8)]
    assert [p.shape for p in predict_resized(images, pointwise, 32)] == [(2, 33, 47), (2, 40, 20)]


# --- a tiny trained model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=8)


@pytest.fixture(scope="module")
def checkpoint(data, tmp_path_factory) -> Path:
    _, paths = train_tiny(data, tmp_path_factory.mktemp("model"), epochs=8, lr=0.01)
    return paths["best_path"]


@pytest.mark.slow
def test_cli_predictions_equal_the_pipelines(data, checkpoint, tmp_path) -> None:
    test = data["test"]
    predict_split(checkpoint, test["manifest"], test["array"], tmp_path / "pipeline")
    rows = pd.read_csv(test["manifest"])
    model = load_model([checkpoint], device="cpu")
    predict_files(model, [Path(p) for p in rows["image"]], tmp_path / "cli", batch_size=3)
    for image_id in rows["id"]:
        a = np.asarray(Image.open(tmp_path / "pipeline" / "masks" / f"{image_id}.png"))
        b = np.asarray(Image.open(tmp_path / "cli" / "masks" / f"{image_id}.png"))
        assert np.array_equal(a, b), image_id


def tied_checkpoint(checkpoint: Path, out: Path) -> Path:
    """``checkpoint`` with its last class's head a copy of the class before it: the two classes
    score the same at every pixel, so wherever they lead they tie."""
    ckpt = load_checkpoint(checkpoint)
    state = dict(ckpt["model"])
    head = [key for key in state if key.startswith("segmentation_head.")]
    assert len(head) == 2, head  # its convolution's weight and bias
    for key in head:
        state[key] = state[key].clone()
        state[key][-1] = state[key][-2]
    save_checkpoint(out, {**ckpt, "model": state})
    return out


@pytest.mark.parametrize("tta", [[], ["hflip"]])
def test_tied_classes_go_to_the_lower_id_in_the_pipeline_and_the_cli_alike(
    data, checkpoint, tmp_path, tta
) -> None:
    tied = tied_checkpoint(checkpoint, tmp_path / "tied.pt")
    test = data["test"]
    predict_split(
        tied, test["manifest"], test["array"], tmp_path / "pipeline", PredictOptions(tta=tta)
    )
    rows = pd.read_csv(test["manifest"])
    model = load_model([tied], device="cpu")
    files = [Path(p) for p in rows["image"]]
    predict_files(model, files, tmp_path / "cli", tta=tta, batch_size=3)
    predicted = set()
    for image_id in rows["id"]:
        a = np.asarray(Image.open(tmp_path / "pipeline" / "masks" / f"{image_id}.png"))
        b = np.asarray(Image.open(tmp_path / "cli" / "masks" / f"{image_id}.png"))
        assert np.array_equal(a, b), image_id
        predicted |= set(np.unique(a).tolist())
    low, high = len(CLASSES) - 2, len(CLASSES) - 1
    assert low in predicted and high not in predicted, predicted


def test_sliding_windows_beat_squashing_a_large_image(checkpoint) -> None:
    """A 6 x 6 mosaic of training-like 32 px pieces: sliding windows see them at the scale the
    model learnt; resizing squashes the mosaic into 32 px."""
    rng = np.random.default_rng(7)
    pieces = [make_pair(rng, 32, 32) for _ in range(36)]
    rgb = np.concatenate(
        [np.concatenate([pieces[6 * r + c][0] for c in range(6)], axis=1) for r in range(6)],
        axis=0,
    )
    truth = np.concatenate(
        [np.concatenate([pieces[6 * r + c][1] for c in range(6)], axis=1) for r in range(6)],
        axis=0,
    )
    model = load_model([checkpoint], device="cpu")

    def miou(p: torch.Tensor) -> float:
        cm = confusion_matrix(p.argmax(0), torch.from_numpy(truth), len(CLASSES), 255)
        return summarize(cm)["mean_iou"]

    sliding = miou(predict_sliding(rgb, model.score, 32, overlap=0.5))
    resized = miou(predict_resized([rgb], model.score, 32)[0])
    assert sliding >= resized, (sliding, resized)
    assert sliding > resized + 0.05, (sliding, resized)


# --- segpipe predict ------------------------------------------------------------------------


def segpipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "segpipe"), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def odd_images(folder: Path) -> dict[str, tuple[int, int]]:
    """Files that are images only by content or mode, and one that is no image; name -> (h, w)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (33, 47, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "png_named.jpg", format="PNG")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]]), mode="RGBA").save(folder / "rgba.png")
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
    deep = (rng.integers(0, 65535, (40, 30))).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")
    (folder / "notes.png").write_text("not an image")
    return {"png_named": (33, 47), "rgba": (33, 47), "grey": (33, 47), "deep16": (40, 30)}


@pytest.mark.slow
def test_segpipe_predict_reads_images_by_content_and_lists_skips(checkpoint, tmp_path) -> None:
    expected = odd_images(tmp_path / "in")
    out = tmp_path / "out"
    proc = segpipe("predict", checkpoint, tmp_path / "in", "--out", out, "--probabilities")
    assert proc.returncode == 1, proc.stderr  # notes.png skipped
    assert "4 of 5 images predicted" in proc.stdout and "skipped" in proc.stdout
    for name, size in expected.items():
        mask = np.asarray(Image.open(out / "masks" / f"{name}.png"))
        assert mask.shape == size and mask.max() < len(CLASSES)
        assert Image.open(out / "overlays" / f"{name}.jpg").size == size[::-1]
        saved = np.load(out / "probabilities" / f"{name}.npz")
        p = saved["probabilities"]
        assert p.dtype == np.uint8 and p.shape == (len(CLASSES), *size)
        assert np.abs(p.astype(int).sum(0) - 255).max() <= len(CLASSES)
        assert np.array_equal(p.argmax(0), mask) or (p.argmax(0) == mask).mean() > 0.99
        assert list(saved["classes"]) == CLASSES
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert summary["status"].tolist().count("skipped") == 1
    assert summary.loc[summary["status"] == "skipped", "file"].str.endswith("notes.png").all()
    assert not list(out.rglob("*.tmp*"))


@pytest.mark.slow
def test_segpipe_predict_sliding_with_tta_on_a_large_image_in_bounded_memory(
    checkpoint, tmp_path
) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(rgb).save(tmp_path / "in" / "large.jpg", quality=80)
    # The command in a process of its own that prints its peak resident memory once its
    # libraries are loaded and once it has predicted: the image's share is the difference.
    measured = (
        "import resource, sys; from segpipe.cli import main; import segpipe.inference.folder; "
        "peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        "print('loaded_kb', peak()); rc = main(sys.argv[1:]); print('peak_kb', peak()); "
        "sys.exit(rc)"
    )
    args = ["predict", checkpoint, tmp_path / "in", "-o", tmp_path / "out", "--tta", "hflip"]
    proc = subprocess.run(
        [sys.executable, "-c", measured, *map(str, args)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    loaded = int(proc.stdout.split("loaded_kb")[1].split()[0]) / 1024
    image_mb = int(proc.stdout.split("peak_kb")[1].split()[0]) / 1024 - loaded
    assert Image.open(tmp_path / "out" / "masks" / "large.png").size == (4000, 3000)
    # 12 M pixels: the image, its probabilities and mask, a few hundred MB each at most.
    assert image_mb < 1500, f"{image_mb:.0f} MB over the {loaded:.0f} MB of the libraries"
    small = tmp_path / "in" / "large.jpg"
    Image.fromarray(rgb[:100, :130]).save(small)
    proc = segpipe(
        "predict",
        checkpoint,
        small,
        "-o",
        tmp_path / "tiles",
        "--mode",
        "sliding",
        "--tta",
        "hflip",
        "vflip",
    )
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "tiles" / "masks" / "large.png").size == (130, 100)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_a_checkpoint", "not a readable segpipe checkpoint"),
        ("empty_folder", "no images in"),
        ("out_is_input", "is the input folder"),
        ("missing_input", "no such file or folder"),
    ],
)
def test_segpipe_predict_bad_input_is_one_line(case, message, checkpoint, tmp_path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    ckpt, inputs, out = checkpoint, [folder], tmp_path / "out"
    if case == "not_a_checkpoint":
        ckpt = folder / "a.png"
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        inputs = [tmp_path / "empty"]
    elif case == "out_is_input":
        out = folder
    else:
        inputs = [tmp_path / "nowhere"]
    proc = segpipe("predict", ckpt, *inputs, "--out", out)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "segpipe predict: error:" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_of_other_classes_is_refused(checkpoint, tmp_path) -> None:
    model = load_model([checkpoint], device="cpu")
    with pytest.raises(InferError, match="differ from the config's"):
        predict_files(model, [tmp_path], tmp_path / "out", classes=["cell", "membrane"])


@pytest.mark.slow
def test_segpipe_predict_help_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "segpipe.cli", "predict", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--tta" in proc.stdout


# --- bad input to segpipe predict (a model that needs no training) --------------------------


def fake_model() -> Predictor:
    return Predictor(pointwise, ["background", "object"], ModelInput(32))


def image(path: Path, size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path, format="PNG")
    return path


def truncated(path: Path) -> Path:
    data = image(path, (64, 64)).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys):
    """``segpipe predict`` in this process with the fake model: (exit status, stdout, stderr)."""
    monkeypatch.setattr("segpipe.inference.folder.load_model", lambda *a, **k: fake_model())
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"stands for a checkpoint")

    def run(*args) -> tuple[int, str, str]:
        status = main(["predict", str(checkpoint), *map(str, args)])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.mark.parametrize(
    ("files", "status", "reasons"),
    [
        ({"a.png": b"", "b.jpg": b"", "c.tif": b""}, 1, ["empty file"] * 3),
        ({"a.png": "truncated", "b.png": "image"}, 1, ["truncated or damaged image"]),
        ({"notes.png": b"not an image", "b.png": "image"}, 1, ["not an image"]),
        ({"a.png": "image", "b.jpg": "image"}, 0, []),
    ],
    ids=["all_empty", "one_truncated", "text_named_png", "all_readable"],
)
def test_predict_exit_status_says_whether_every_input_was_predicted(
    cli, tmp_path, files, status, reasons
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, content in files.items():
        if content == "image":
            image(folder / name)
        elif content == "truncated":
            truncated(folder / name)
        else:
            (folder / name).write_bytes(content)
    code, out, err = cli(folder, "--out", tmp_path / "out")
    assert code == status, out + err
    assert f"{len(files) - len(reasons)} of {len(files)} images predicted" in out
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", keep_default_na=False)
    got = summary.loc[summary["status"] == "skipped", "reason"].tolist()
    assert len(got) == len(reasons) and all(
        g.startswith(r) for g, r in zip(got, reasons, strict=True)
    )
    assert "cannot identify image file" not in out + err and "Traceback" not in err


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no images in"),
        ({".hidden.png": "image"}, "no images in"),
        ({"x.png/.keep": b""}, "no images in"),
    ],
    ids=["empty_folder", "only_hidden_files", "empty_folder_named_x_png"],
)
def test_predict_without_any_input_file_is_a_usage_error(cli, tmp_path, layout, message):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, content in layout.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        image(folder / name) if content == "image" else (folder / name).write_bytes(content)
    code, _, err = cli(folder, "--out", tmp_path / "out")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_everything_a_folder_holds_is_predicted_or_has_a_row(cli, tmp_path) -> None:
    """``.dot.png`` was dropped with no row while ``.hidden/x.png`` was predicted: now hidden
    files and folders (any depth), links to folders, broken links and FIFOs each get a
    skipped row with the reason, and exit 1; a hidden file given by name is predicted."""
    folder = tmp_path / "in"
    image(folder / "a.png")
    image(folder / ".dot.png")
    image(folder / ".hidden" / "x.png")
    image(folder / "sub" / ".deep" / "y.png")
    image(tmp_path / "elsewhere" / "z.png")
    (folder / "to_folder").symlink_to(tmp_path / "elsewhere")
    (folder / "broken.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "to_file.png").symlink_to(folder / "a.png")
    os.mkfifo(folder / "pipe.png")
    code, out, err = cli(folder, "--out", tmp_path / "out")
    assert code == 1, out + err
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", keep_default_na=False)
    reasons = dict(zip(summary["file"], summary["reason"], strict=True))
    status = dict(zip(summary["file"], summary["status"], strict=True))
    assert status[str(folder / "a.png")] == status[str(folder / "to_file.png")] == "predicted"
    assert reasons[str(folder / ".dot.png")].startswith("hidden file")
    assert reasons[str(folder / ".hidden")].startswith("hidden folder")
    assert reasons[str(folder / "sub" / ".deep")].startswith("hidden folder")
    assert reasons[str(folder / "to_folder")].startswith("link to a folder")
    assert reasons[str(folder / "broken.png")].startswith("broken symbolic link")
    assert reasons[str(folder / "pipe.png")].startswith("not a regular file")
    assert len(summary) == 8 and "2 of 8 images predicted" in out
    code, _, err = cli(folder / ".dot.png", "--out", tmp_path / "by_name")
    assert code == 0, err
    assert predicted_masks(tmp_path / "by_name") == [".dot.png"]


def test_a_folder_named_like_an_image_is_searched(cli, tmp_path) -> None:
    image(tmp_path / "in" / "x.png" / "y.png")
    code, _, _ = cli(tmp_path / "in" / "x.png", tmp_path / "in", "--out", tmp_path / "out")
    assert code == 0
    assert (tmp_path / "out" / "masks" / "x.png" / "y.png").is_file()


def predicted_masks(out: Path) -> list[str]:
    return sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.*"))


def test_outputs_keep_the_sub_folders_and_drop_the_suffix(tmp_path) -> None:
    for name in ("a/x.png", "b/x.png", "b/deep/x.png", "y.jpg", "z.tar.gz"):
        image(tmp_path / "in" / name)
    summary = predict_files(fake_model(), [tmp_path / "in"], tmp_path / "out")
    expected = ["a/x.png", "b/deep/x.png", "b/x.png", "y.png", "z.tar.png"]
    assert predicted_masks(tmp_path / "out") == expected
    assert sorted(summary["output"]) == [f"masks/{name}" for name in expected]
    assert summary["output"].is_unique and len(summary) == 5
    overlays = sorted(
        p.relative_to(tmp_path / "out" / "overlays").as_posix()
        for p in (tmp_path / "out" / "overlays").rglob("*.jpg")
    )
    assert overlays == [name.removesuffix(".png") + ".jpg" for name in expected]


def test_several_inputs_are_named_below_the_folder_that_holds_them(tmp_path) -> None:
    one, two = image(tmp_path / "d1" / "x.png"), image(tmp_path / "d2" / "x.png")
    image(tmp_path / "f1" / "x.png")
    image(tmp_path / "f2" / "x.png")
    predict_files(fake_model(), [one, two], tmp_path / "files")
    assert predicted_masks(tmp_path / "files") == ["d1/x.png", "d2/x.png"]
    predict_files(fake_model(), [tmp_path / "f1", tmp_path / "f2"], tmp_path / "folders")
    assert predicted_masks(tmp_path / "folders") == ["f1/x.png", "f2/x.png"]
    predict_files(fake_model(), [one], tmp_path / "single")
    assert predicted_masks(tmp_path / "single") == ["x.png"]


def test_a_file_given_twice_is_predicted_once(tmp_path, monkeypatch) -> None:
    x = image(tmp_path / "in" / "x.png")
    monkeypatch.chdir(tmp_path)
    inputs = [x, Path("in/x.png"), Path("in/../in/x.png"), tmp_path / "in"]
    summary = predict_files(fake_model(), inputs, tmp_path / "out")
    assert len(summary) == 1 and summary["output"].tolist() == ["masks/x.png"]


@pytest.mark.parametrize(
    "names",
    [
        ("x.jpg", "x.png"),
        ("X.png", "x.png"),
        ("\u00e9.png", "e\u0301.png"),  # the same name, NFC and NFD
        ("a/x.png", "A/x.jpg"),
    ],
    ids=["same_stem", "case_only", "nfc_nfd", "folder_case"],
)
def test_two_inputs_for_one_output_are_refused_naming_both(cli, tmp_path, names) -> None:
    for name in names:
        image(tmp_path / "in" / name)
    if len(list((tmp_path / "in").rglob("*.*"))) < 2:
        pytest.skip("a file system that folds these names into one file")
    code, _, err = cli(tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert all(str(tmp_path / "in" / name) in err for name in names), err
    assert "same file" in err and not (tmp_path / "out").exists()
    if names[0] == "\u00e9.png":  # printed alike: escaped, and why they are one name
        assert "they differ only in Unicode normalisation: " in err
        assert "'\\xe9.png' (NFC)" in err and "'e\\u0301.png' (NFD)" in err


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "a/", "A/", "b/c/"]),
            st.sampled_from(["x", "X", "y", "\u00e9", "e\u0301"]),
            st.sampled_from([".png", ".PNG", ".jpg", ".tif"]),
        ),
        min_size=1,
        max_size=6,
        unique=True,
    )
)
def test_output_names_are_distinct_or_refused(tmp_path_factory, paths) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as tmp:
        root = Path(tmp)
        for folder, stem, suffix in paths:
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / f"{folder}{stem}{suffix}").write_bytes(b"")
        files = sorted(p for p in root.rglob("*") if p.is_file())
        keys = [unicodedata.normalize("NFC", f"{p.parent}/{p.stem}").casefold() for p in files]
        try:
            named = find_inputs([root])
        except OutputClashError as exc:
            assert len(set(keys)) < len(keys)
            assert str(exc).count(" and ") >= 1
            return
        assert len(set(keys)) == len(keys) == len(named)
        for file, name in named:
            assert name == file.relative_to(root).with_suffix("").as_posix()


def test_an_output_path_that_is_a_file_is_one_line(cli, tmp_path) -> None:
    image(tmp_path / "in" / "a.png")
    (tmp_path / "taken").write_text("a file")
    for out in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        code, _, err = cli(tmp_path / "in", "--out", out)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert str(out) in err and "Traceback" not in err
    assert (tmp_path / "taken").read_text() == "a file"


def test_an_output_folder_with_files_needs_overwrite(cli, tmp_path) -> None:
    image(tmp_path / "in" / "old.png")
    assert cli(tmp_path / "in", "--out", tmp_path / "out")[0] == 0  # an earlier prediction
    old = tmp_path / "out" / "masks" / "old.png"
    (tmp_path / "in" / "old.png").unlink()
    image(tmp_path / "in" / "new.png")
    code, _, err = cli(tmp_path / "in", "--out", tmp_path / "out")
    assert code == 2 and "already holds 4 file(s)" in err and str(tmp_path / "out") in err
    assert old.is_file() and "--overwrite" in err
    code, _, _ = cli(tmp_path / "in", "--out", tmp_path / "out", "--overwrite")
    assert code == 0 and predicted_masks(tmp_path / "out") == ["new.png"]
    (tmp_path / "empty").mkdir()
    assert cli(tmp_path / "in", "--out", tmp_path / "empty")[0] == 0


def test_overwrite_replaces_only_what_segpipe_predict_wrote(cli, tmp_path) -> None:
    """A folder that looks like predictions but that segpipe did not write (no manifest, or
    one of another writer), or an earlier output that now holds a file of the user's, is never
    replaced: --overwrite is refused naming the folder and the files, and nothing changes."""
    image(tmp_path / "in" / "new.png")
    hand_made = tmp_path / "hand_made"
    image(hand_made / "masks" / "old.png")
    (hand_made / "summary.csv").write_text("file,status,output,reason\n")
    assert cli(tmp_path / "in", "--out", tmp_path / "out")[0] == 0
    (tmp_path / "out" / "notes.txt").write_text("my notes")
    (tmp_path / "out" / "masks" / "mine.png").write_bytes(b"mine")
    other = tmp_path / "other"
    image(other / "a.png")
    (other / MANIFEST).write_text('{"writer": "someone else", "files": ["a.png"]}')
    for out, message in [
        (hand_made, f"no {MANIFEST} of segpipe predict"),
        (
            tmp_path / "out",
            "2 file(s) that segpipe predict did not write (masks/mine.png, notes.txt)",
        ),
        (other, f"no {MANIFEST} of segpipe predict"),
    ]:
        before = digests(tmp_path)
        code, _, err = cli(tmp_path / "in", "--out", out, "--overwrite")
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert digests(tmp_path) == before


def test_an_interrupted_prediction_leaves_no_output_folder(tmp_path) -> None:
    for i in range(3):
        image(tmp_path / "in" / f"{i}.png")
    calls = []

    def dies_second_time(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return pointwise(x)

    model = Predictor(dies_second_time, ["background", "object"], ModelInput(32))
    with pytest.raises(KeyboardInterrupt):
        predict_files(model, [tmp_path / "in"], tmp_path / "out", batch_size=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_the_report_gallery_finds_the_overlays_in_sub_folders(tmp_path) -> None:
    for name in ("a/x.png", "b/x.png", "y.jpg"):
        image(tmp_path / "in" / name)
    (tmp_path / "in" / "b" / "empty.png").write_bytes(b"")
    predict_files(fake_model(), [tmp_path / "in"], tmp_path / "out")
    gallery = infer_gallery(tmp_path / "out", 10, num_classes=2)
    assert [item["name"] for item in gallery["items"]] == ["a/x.png", "b/x.png", "y.jpg"]
    assert gallery["skipped"] == [{"name": "empty.png", "reason": "empty file"}]


def test_no_overlays_writes_masks_only_and_the_gallery_draws_them(cli, tmp_path) -> None:
    for name in ("a/x.png", "y.jpg"):
        image(tmp_path / "in" / name, (12, 10))
    status, _, _ = cli(tmp_path / "in", "--out", tmp_path / "drawn")
    assert status == 0
    status, out, _ = cli(tmp_path / "in", "--out", tmp_path / "bare", "--no-overlays")
    assert status == 0 and "2 of 2 images predicted" in out
    folder = tmp_path / "bare"
    bare = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert bare == [MANIFEST, "masks/a/x.png", "masks/y.png", "summary.csv"]
    for name in ("a/x", "y"):
        a = np.asarray(Image.open(tmp_path / "drawn" / "masks" / f"{name}.png"))
        b = np.asarray(Image.open(tmp_path / "bare" / "masks" / f"{name}.png"))
        assert np.array_equal(a, b)
    # The report's gallery: the overlays written, or drawn alike from the images and masks.
    drawn = infer_gallery(tmp_path / "drawn", 10, num_classes=2)
    redrawn = infer_gallery(tmp_path / "bare", 10, num_classes=2)
    assert [i["name"] for i in redrawn["items"]] == [i["name"] for i in drawn["items"]]
    for a, b in zip(drawn["items"], redrawn["items"], strict=True):
        assert np.abs(thumbnail(a["src"]) - thumbnail(b["src"])).mean() < 4  # JPEG, twice


def thumbnail(src: str) -> np.ndarray:
    """The pixels of a gallery item's JPEG data URI."""
    import base64
    import io

    data = base64.b64decode(src.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)
