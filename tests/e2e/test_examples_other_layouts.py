"""Examples of other layouts at tiny scale (tests/helpers/example_runs.py):

- oxford_pets_mobilenetv2: the synthetic Oxford-layout dataset (no real Oxford in CI);
- voc_vgg16_unet: a VOC-layout copy of CamVid the test builds (palette PNGs, 255 = void,
  ImageSets lists, detection-only images in JPEGImages);
- compare_camvid_scale: CamVid scenes squashed against kept at their scale.

No input file may change: the tests compare the inputs' hashes before and after their run.
"""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from helpers.example_runs import (
    build_camvid_voc,
    camvid_pairs,
    check_comparison,
    check_outputs,
    digest_files,
    load_example,
    run_example,
    tiny,
)
from helpers.remap import tree_digest
from helpers.repo import copy_workflow

pytestmark = pytest.mark.slow


@pytest.mark.slow
def test_example_2_oxford_pets_mobilenetv2(tmp_path):
    cfg = tiny(load_example("oxford_pets_mobilenetv2"))
    cfg["dataset"] = {
        "source": "synthetic",
        "name": "synthetic Oxford-layout pets",
        "synthetic": {"n_images": 16, "seed": 1, "min_size": 40, "max_size": 56},
    }
    results = run_example(copy_workflow(tmp_path / "work"), "oxford_pets_mobilenetv2", cfg)
    check_outputs(results, cfg)


@pytest.mark.slow
@pytest.mark.shared_data
def test_comparison_c_camvid_squashed_against_kept_at_scale(shared_data, tmp_path):
    # The first 24 training scenes at their full 480 x 360, linked, not copied: the scale logic
    # sees real sizes; the run predicts 8 val and test scenes per model instead of 128.
    camvid = tmp_path / "camvid"
    for sub in ("train", "trainannot"):
        (camvid / sub).mkdir(parents=True)
    for image, mask in camvid_pairs(shared_data, "train", 24):
        (camvid / "train" / image.name).symlink_to(image)
        (camvid / "trainannot" / mask.name).symlink_to(mask)
    cfg = tiny(load_example("compare_camvid_scale"), root=str(camvid))
    scale = cfg["experiments"]["scale"]
    assert scale["train"]["resize"] == "keep_aspect" and scale["predict"]["mode"] == "sliding"
    scale["train"]["image_scale"] = 0.1  # 48 x 36 scenes: sliding 32 px windows over them
    results = run_example(copy_workflow(tmp_path / "work"), "compare_camvid_scale", cfg)
    check_comparison(results, cfg)
    assert (results / "preprocess" / "base" / "x0.1" / "test.npy").is_file()
    test = pd.read_csv(results / "split" / "base" / "test.csv")
    with Image.open(
        results / "runs" / "scale" / "predict" / "test" / "masks" / f"{test['id'][0]}.png"
    ) as m:
        assert m.size == (480, 360)


@pytest.mark.slow
@pytest.mark.shared_data
def test_example_5_voc_vgg16_unet(shared_data, tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    sources = build_camvid_voc(shared_data, root)
    before, source_digest = tree_digest(root), digest_files(sources)
    cfg = tiny(load_example("voc_vgg16_unet"), root=str(root))
    results = run_example(copy_workflow(tmp_path / "work"), "voc_vgg16_unet", cfg)
    check_outputs(results, cfg)
    test = pd.read_csv(results / "split" / "base" / "test.csv")
    assert len(test) == 3  # VOC's val list is the test split
    remap_log = (results.parent / "logs" / "remap" / "remap.log").read_text()
    assert "2 images in" in remap_log and "have no mask and are in no split list" in remap_log
    assert tree_digest(root) == before and digest_files(sources) == source_digest
