"""Every example config under config/examples/ is complete and valid, and the CamVid-derived
seven-class examples run end to end at tiny scale (tests/helpers/example_runs.py).

1. unet_7class_grayscale and the class-imbalance comparison: CamVid pairs with the 12 ids grouped
   into 7 classes, stored by the test as greyscale intensities (0, 40, ... 240; void 255), images
   as JPEG, masks as PNG.

The ISBI examples run in tests/e2e/test_examples_isbi.py; the Oxford and VOC layouts and the CamVid
scale comparison in tests/e2e/test_examples_other_layouts.py. No input file may change: every test
compares the inputs' hashes before and after its run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from segpipe.models.checkpoints import load_checkpoint, model_from_config
from segpipe.params import tracked
from segpipe.workflow.config import load_schema, validate_config
from segpipe.workflow.experiments import expand_runs

from helpers.example_runs import (
    COMPARISONS,
    CROSS_VALIDATED,
    NAMES,
    build_camvid_7_grey,
    check_outputs,
    digest_files,
    load_example,
    run_example,
    tiny,
)
from helpers.remap import tree_digest
from helpers.repo import REPO, copy_workflow, planned_rules

# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", NAMES + COMPARISONS + CROSS_VALIDATED)
def test_example_is_a_complete_valid_config(name):
    schema = load_schema(REPO / "config" / "schema.yaml")
    raw = load_example(name)
    cfg = validate_config(raw, schema)
    # Complete: every section config/config.yaml sets is set, so nothing merges in from it.
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for section, value in default.items():
        assert section in raw, section
        if isinstance(value, dict) and section != "resources":
            assert set(value) <= set(raw[section]), section
    assert cfg["run_name"] == raw["run_name"]


def test_examples_reproduce_their_setups():
    one, two, mini, mobile, aug, voc = (load_example(n)["train"] for n in NAMES)
    ex1 = load_example("unet_7class_grayscale")
    assert len(ex1["classes"]) == 7 and one["image_size"] == 256 and one["loss"] == "ce"
    assert one["decoder_dropout"] > 0 and len(ex1["remap"]["table"]) == 7
    ex2 = load_example("oxford_pets_mobilenetv2")
    assert two["encoder"] == "mobilenet_v2" and two["image_size"] == 128
    assert two["class_weights"] == [2.0, 2.0, 1.0] and two["augment"] == {"hflip": 0.5}
    assert ex2["classes"] == ["pet", "background", "border"]
    assert mini["encoder_depth"] == 3 and mini["decoder_channels"] == [64, 32, 16]
    assert mobile["encoder"] == "mobilenet_v2"
    assert {"rotate", "translate", "shear", "scale", "hflip"} <= {
        k for k, v in aug["augment"].items() if v
    }
    ex5 = load_example("voc_vgg16_unet")
    assert voc["encoder"] == "vgg16" and voc["loss"] == "ce+dice"
    assert ex5["dataset"]["layout"] == "voc" and ex5["remap"]["ignore_value"] == 255


@pytest.mark.parametrize("name", NAMES + COMPARISONS + CROSS_VALIDATED)
def test_every_example_model_builds(name):
    """The end-to-end example tests train tiny stand-ins (example_runs.STAND_INS); the examples'
    own models, full size, are built here and take an image, on torch's meta device (shapes
    only: nothing is allocated, trained or written)."""
    schema = load_schema(REPO / "config" / "schema.yaml")
    raw = load_example(name)
    validate = lambda cfg: validate_config(cfg, schema)  # noqa: E731
    for run in expand_runs(raw, validate(raw), validate):
        with torch.device("meta"), torch.no_grad():
            logits = model_from_config(run.config).eval()(torch.zeros(1, 3, 64, 64))
        assert logits.shape == (1, len(run.config["classes"]), 64, 64), run.name


def test_comparisons_declare_their_runs():
    schema = load_schema(REPO / "config" / "schema.yaml")

    def runs(name: str) -> dict:
        raw = load_example(name)
        validate = lambda cfg: validate_config(cfg, schema)  # noqa: E731
        return {r.name: r.config["train"] for r in expand_runs(raw, validate(raw), validate)}

    membranes = runs("compare_membrane_unets")
    assert list(membranes) == ["mini-unet", "mobilenet-unet"]
    mini = validate_config(load_example("membrane_mini_unet"), schema)["train"]
    assert membranes["mini-unet"] == mini
    assert membranes["mobilenet-unet"]["encoder"] == "mobilenet_v2"
    assert membranes["mobilenet-unet"]["decoder_channels"] is None
    imbalance = runs("compare_class_imbalance")
    assert list(imbalance) == ["ce", "ce-weighted", "ce-dice", "focal"]
    assert [t["loss"] for t in imbalance.values()] == ["ce", "ce", "ce+dice", "focal"]
    assert len(imbalance["ce-weighted"]["class_weights"]) == 7
    assert imbalance["ce"]["class_weights"] is None
    base = load_example("unet_7class_grayscale")
    assert load_example("compare_class_imbalance")["classes"] == base["classes"]
    assert load_example("compare_class_imbalance")["remap"] == base["remap"]


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def seven_classes(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    """Example 1's data and one workflow copy for it and the class-imbalance comparison (same
    data and sizes: remap, split and preprocess run once)."""
    tmp = tmp_path_factory.mktemp("seven")
    data = tmp / "seven_classes"
    sources = build_camvid_7_grey(shared_data, data)
    before, source_digest = tree_digest(data), digest_files(sources)
    yield data, copy_workflow(tmp / "work")
    assert tree_digest(data) == before and digest_files(sources) == source_digest


@pytest.mark.slow
@pytest.mark.shared_data
def test_example_1_seven_class_grayscale_unet(seven_classes):
    data, work = seven_classes
    cfg = tiny(load_example("unet_7class_grayscale"), root=str(data))
    results = run_example(work, "unet_7class_grayscale", cfg)
    check_outputs(results, cfg)
    # The intensities became the 7 class ids, void the ignore index.
    mask = np.asarray(Image.open(next((results / "remap" / "masks").iterdir())))
    assert set(np.unique(mask)) <= set(range(7)) | {255}


@pytest.mark.slow
@pytest.mark.shared_data
def test_comparison_b_class_imbalance(seven_classes):
    """The four runs train with their losses and median-frequency class weights; predicting,
    evaluating, the reports and the comparison are planned. Those run end to end for the
    membrane comparison (tests/e2e/test_examples_isbi.py) and in tests/workflow/test_experiments.py."""
    data, work = seven_classes
    cfg = tiny(load_example("compare_class_imbalance"), root=str(data))
    results = run_example(work, "compare_class_imbalance", cfg, "--until", "train")
    for name, override in cfg["experiments"].items():
        trained = load_checkpoint(results / "runs" / name / "train" / "best.pt")["config"]
        options = {**cfg["train"], **(override or {}).get("train", {})}
        for key, value in tracked("train", options).items():  # as the checkpoint records it
            if key != "augment":
                assert trained["train"][key] == value, (name, key)
    planned = planned_rules(work, "--configfile", "config/examples/compare_class_imbalance.yaml")
    assert "train" not in planned
    assert (planned["predict"], planned["evaluate"], planned["report"]) == (4, 8, 4)
    assert planned["compare"] == 1
