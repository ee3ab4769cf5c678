"""Predicting a model's splits (rule predict): every split in one job, and with flips the
predictions without them from the same forward passes, equal to predicting each way alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segpipe.data import predictions
from segpipe.data.preprocess import preprocess_split
from segpipe.inference.predict_splits import PredictOptions, predict_model, predict_split

from helpers.train import one_epoch_checkpoint, tiny_splits
from helpers.train import train as train_tiny

SPLITS = ("val", "test")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=4)


@pytest.fixture(scope="module")
def checkpoint(data, tmp_path_factory) -> Path:
    return one_epoch_checkpoint(data, tmp_path_factory.mktemp("model"))


def masks(folder: Path) -> dict[str, np.ndarray]:
    found = sorted((folder / predictions.MASKS).glob(f"*{predictions.MASK_SUFFIX}"))
    assert found, f"no masks in {folder}"
    return {path.name: np.asarray(Image.open(path)) for path in found}


def predict_all(data: dict, checkpoint: Path, out: Path, **options) -> None:
    parts = ("train", "val", "test")
    predict_model(
        [checkpoint],
        {split: data[split]["manifest"] for split in SPLITS},
        [data[part]["array"] for part in parts],
        [data[part]["manifest"] for part in parts],
        out,
        PredictOptions(device="cpu", **options),
    )


def test_flips_and_no_flips_in_one_job_equal_each_predicted_alone(data, checkpoint, tmp_path):
    flips = ["hflip", "vflip"]
    predict_all(data, checkpoint, tmp_path / "model", tta=flips)
    for split in SPLITS:
        alone = {}
        for name, tta in (("tta", flips), ("plain", [])):
            alone[name] = tmp_path / f"{split}-{name}"
            predict_split(
                checkpoint,
                data[split]["manifest"],
                data[split]["array"],
                alone[name],
                PredictOptions(tta=tta),
            )
        with_flips = predictions.split_dir(tmp_path / "model", split)
        without = predictions.split_dir(tmp_path / "model", split, tta=False)
        assert masks(with_flips).keys() == masks(alone["tta"]).keys()
        for name, mask in masks(with_flips).items():
            assert np.array_equal(mask, masks(alone["tta"])[name]), (split, name)
        for name, mask in masks(without).items():
            assert np.array_equal(mask, masks(alone["plain"])[name]), (split, name)
        assert (with_flips / predictions.OVERLAYS).is_dir()
        assert (without / predictions.OVERLAYS).is_dir()


@pytest.fixture(scope="module")
def kept(data, tmp_path_factory) -> tuple[dict, Path]:
    """The splits kept at 0.75 of their size (aspect kept) and a model trained on crops."""
    root = tmp_path_factory.mktemp("kept")
    splits = {
        part: {
            "manifest": data[part]["manifest"],
            "array": preprocess_split(
                data[part]["manifest"], root / f"{part}.npy", image_size=0, scale=0.75
            ),
        }
        for part in ("train", "val", "test")
    }
    n = torch.get_num_threads()
    _, paths = train_tiny(
        splits, root / "model", epochs=1, resize="keep_aspect", image_scale=0.75, image_size=24
    )
    torch.set_num_threads(n)
    return splits, paths["best_path"]


@pytest.mark.parametrize("mode", ["resize", "sliding"])
def test_at_scale_both_views_equal_each_predicted_alone(kept, mode, tmp_path) -> None:
    """Images kept at scale, scored whole or in overlapping windows: the unflipped view
    carried beside the flipped average through padding, tiles and resizing stays itself."""
    splits, checkpoint = kept
    predict_all(splits, checkpoint, tmp_path / "model", tta=["hflip"], mode=mode, overlap=0.5)
    for split in SPLITS:
        for flips, tta in ((True, ["hflip"]), (False, [])):
            alone = tmp_path / f"{split}-{flips}"
            predict_split(
                checkpoint,
                splits[split]["manifest"],
                splits[split]["array"],
                alone,
                PredictOptions(tta=tta, mode=mode, overlap=0.5),
            )
            together = masks(predictions.split_dir(tmp_path / "model", split, tta=flips))
            assert together.keys() == masks(alone).keys()
            for name, mask in together.items():
                assert np.array_equal(mask, masks(alone)[name]), (mode, split, flips, name)


def test_without_flips_one_folder_per_split_and_nothing_else(data, checkpoint, tmp_path):
    predict_all(data, checkpoint, tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted(SPLITS)
    assert not (tmp_path / "model" / predictions.NO_TTA).exists()


def test_without_overlays_the_same_masks_and_no_overlays_folder(
    data, checkpoint, tmp_path, monkeypatch
):
    """predict.overlays other than all: masks only, the images not even read for overlays."""
    predict_all(data, checkpoint, tmp_path / "drawn", tta=["hflip"])

    def unread(*args, **kwargs):
        raise AssertionError("an image read back without overlays")

    monkeypatch.setattr("segpipe.inference.predict_splits.load_rgb", unread)
    predict_all(data, checkpoint, tmp_path / "bare", tta=["hflip"], with_overlays=False)
    for split in SPLITS:
        for flips in (True, False):
            drawn = predictions.split_dir(tmp_path / "drawn", split, tta=flips)
            bare = predictions.split_dir(tmp_path / "bare", split, tta=flips)
            assert (drawn / predictions.OVERLAYS).is_dir()
            assert sorted(p.name for p in bare.iterdir()) == [predictions.MASKS]
            assert masks(bare).keys() == masks(drawn).keys()
            for name, mask in masks(bare).items():
                assert np.array_equal(mask, masks(drawn)[name]), (split, flips, name)


def test_a_failing_split_leaves_no_folder(data, checkpoint, tmp_path):
    """The folder appears whole or not at all: a later split's bad manifest fails the job."""
    bad = tmp_path / "bad.csv"
    bad.write_text(data["test"]["manifest"].read_text().replace(",", ",x", 1))
    with pytest.raises(ValueError, match="bad.csv"):
        predict_model(
            [checkpoint],
            {"val": data["val"]["manifest"], "test": bad},
            [data["val"]["array"]],
            [data["val"]["manifest"]],
            tmp_path / "model",
            PredictOptions(device="cpu"),
        )
    assert not (tmp_path / "model").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.csv"]


def test_sliding_windows_over_a_squashed_models_split_are_refused_before_any_output(
    data, checkpoint, tmp_path
) -> None:
    """A squashed model's samples are squares of its training size already: the checkpoint's
    geometry refuses the mode before the model scores anything or the folder appears."""
    out = tmp_path / "val"
    with pytest.raises(ValueError, match=rf"{checkpoint.name}: sliding windows need"):
        predict_split(
            checkpoint,
            data["val"]["manifest"],
            data["val"]["array"],
            out,
            PredictOptions(mode="sliding"),
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []
