"""Predicting new images: the inference engine (flips, resizing, sliding windows) and
``segpipe predict``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_train import CLASSES, make_pair, tiny_splits
from test_train import train as train_tiny

from segpipe.evaluate import confusion_matrix
from segpipe.infer import InferError, load_model, predict_files
from segpipe.inference import (
    flip_views,
    normalized,
    predict_resized,
    predict_sliding,
    tile_starts,
    with_flips,
)
from segpipe.metrics import summarize
from segpipe.predict import predict_split

from conftest import BIN

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
    got = with_flips(ramp, ["hflip"])(x)
    assert torch.allclose(got, (ramp(x) + ramp(x.flip(3)).flip(3)) / 2)
    assert torch.allclose(got[:, 0], torch.full((2, 5, 7), 0.5))
    # A pixel-wise scorer is flip-equivariant: TTA changes nothing.
    assert torch.allclose(with_flips(pointwise, ["hflip", "vflip"])(x), pointwise(x), atol=1e-6)


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
    assert proc.returncode == 0, proc.stderr
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
        "import resource, sys; from segpipe.cli import main; import segpipe.infer; "
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
