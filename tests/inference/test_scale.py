"""Images kept at a scale: preprocess keeps the aspect ratio, training crops, prediction at that
scale whole or in sliding windows, in the pipeline and in segpipe predict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from segpipe.data.preprocess import load_array, preprocess_split
from segpipe.inference.folder import load_model, predict_files
from segpipe.models.model_input import ModelInput
from segpipe.workflow.config import ConfigError, load_schema, validate_config

from helpers.repo import REPO, copy_workflow, planned_jobs, snakemake
from helpers.train import write_split

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
KEEP = {"train": {"resize": "keep_aspect", "image_scale": 0.75}, "predict": {"mode": "sliding"}}


def test_preprocess_keeps_the_aspect_at_scale_and_ignores_the_padding(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    split = write_split(tmp_path, "s", 4, seed=1)  # sizes 40x40, 36x44, 44x36, 48x40
    out = preprocess_split(
        split["manifest"], tmp_path / "kept.npy", image_size=0, scale=0.5, ignore_index=255
    )
    arr = load_array(out)
    assert arr.shape == (4, 24, 22, 4)  # the largest at half size: 48 x 44 -> 24 x 22
    rows = pd.read_csv(split["manifest"])
    for i, row in rows.iterrows():
        h, w = round(row["height"] * 0.5), round(row["width"] * 0.5)
        assert (arr[i, h:, :, 3] == 255).all() and (arr[i, :, w:, 3] == 255).all()
        assert (arr[i, :h, :w, 3] != 255).all()
        with Image.open(row["mask"]) as mask:
            expected = np.asarray(mask.resize((w, h), Image.NEAREST))
        assert np.array_equal(arr[i, :h, :w, 3], expected)


def test_sliding_windows_need_images_kept_at_scale() -> None:
    with pytest.raises(ConfigError, match="'predict.mode': sliding windows need"):
        validate_config({**TINY, "predict": {"mode": "sliding"}}, SCHEMA, check_models=False)
    cfg = validate_config({**TINY, **KEEP}, SCHEMA, check_models=False)
    assert cfg["train"]["resize"] == "keep_aspect" and cfg["predict"]["overlap"] == 0.5


@pytest.fixture(scope="module")
def kept(tmp_path_factory) -> tuple[Path, tuple[str, ...]]:
    work = copy_workflow(tmp_path_factory.mktemp("scale"))
    (work / "config" / "scale.yaml").write_text(yaml.safe_dump(KEEP))
    args = ("--configfile", "config/test.yaml", "config/scale.yaml")
    proc = snakemake(work, *args, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work, args


@pytest.mark.slow
def test_a_run_at_scale_trains_on_crops_and_predicts_in_windows(kept) -> None:
    work, args = kept
    arrays = work / "results" / "preprocess" / "base" / "x0.75"
    assert sorted(p.name for p in arrays.iterdir()) == ["test.npy", "train.npy", "val.npy"]
    run = work / "results" / "runs" / "ci-tiny"
    test = pd.read_csv(work / "results" / "split" / "base" / "test.csv")
    for row in test.itertuples():
        with Image.open(run / "predict" / "test" / "masks" / f"{row.id}.png") as mask:
            assert mask.size == (row.width, row.height)
    metrics = yaml.safe_load((run / "evaluate" / "test" / "metrics.json").read_text())
    assert 0 <= metrics["mean_iou"] <= 1
    # Predicting whole instead of in windows reruns predict and what follows, not training.
    (work / "config" / "scale.yaml").write_text(
        yaml.safe_dump({**KEEP, "predict": {"mode": "resize"}})
    )
    rules = {rule for rule, _ in planned_jobs(work, *args)}
    assert rules == {"predict", "evaluate", "report"}
    (work / "config" / "scale.yaml").write_text(yaml.safe_dump(KEEP))


@pytest.mark.slow
def test_segpipe_predict_uses_the_checkpoints_scale(kept, tmp_path) -> None:
    work, _ = kept
    model = load_model([work / "results/runs/ci-tiny/train/best.pt"], device="cpu")
    assert model.input == ModelInput(size=32, scale=0.75)
    rgb = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for mode in ("sliding", "resize"):
        summary = predict_files(model, [tmp_path / "a.png"], tmp_path / mode, mode=mode)
        assert summary["status"].tolist() == ["predicted"]
        with Image.open(tmp_path / mode / "masks" / "a.png") as mask:
            assert mask.size == (90, 70)
