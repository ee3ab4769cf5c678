"""The one class-id mask reader (segpipe.data.masks): greyscale, palette indices and 1-bit read;
RGB, 16-bit, float and LA refused by name, in evaluation and the report gallery too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.data.masks import MaskReadError, load_mask
from segpipe.logs import UserError


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
