"""A model's input geometry, read from a train section, a checkpoint and an ONNX file's
metadata alike, old ones included; and the one place each of its rules is spelled."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from segpipe.models.model_input import SLIDING_NEEDS_SCALE, ModelInput

from helpers.repo import REPO

SQUASHED = {"image_size": 64, "resize": "squash", "image_scale": 0.5}
KEPT = {"image_size": 64, "resize": "keep_aspect", "image_scale": 0.5}


def test_a_squashed_model_has_no_scale_and_is_predicted_whole() -> None:
    model_input = ModelInput.from_train(SQUASHED)
    assert model_input == ModelInput(64, None)
    assert not model_input.keeps_aspect and model_input.crop is None
    assert model_input.default_mode == "resize"
    assert model_input.split_mode_problem("resize") is None
    assert model_input.split_mode_problem("sliding") == SLIDING_NEEDS_SCALE


def test_a_kept_aspect_model_trains_on_crops_and_slides_windows_at_its_scale() -> None:
    model_input = ModelInput.from_train(KEPT)
    assert model_input == ModelInput(64, 0.5)
    assert model_input.keeps_aspect and model_input.crop == 64
    assert model_input.default_mode == "sliding"
    assert model_input.split_mode_problem("sliding") is None
    assert model_input.scaled_size(101, 50) == (50, 25)  # as preprocess resized it
    assert model_input.scaled_size(1, 1) == (1, 1)


@pytest.mark.parametrize(
    ("train", "expected"),
    [
        # Checkpoints from before train.resize and train.image_scale: squashed.
        ({"image_size": 32}, ModelInput(32)),
        # Values as YAML or an old resolved config may hold them.
        ({"image_size": 32.0, "resize": "keep_aspect", "image_scale": 1}, ModelInput(32, 1.0)),
    ],
)
def test_old_and_loosely_typed_train_sections_are_read(train, expected) -> None:
    got = ModelInput.from_train(train)
    assert got == expected
    assert isinstance(got.size, int) and (got.scale is None or isinstance(got.scale, float))


def test_a_checkpoint_is_read_by_its_recorded_train_section() -> None:
    assert ModelInput.from_checkpoint({"config": {"train": KEPT}}) == ModelInput(64, 0.5)


@pytest.mark.parametrize("model_input", [ModelInput(32), ModelInput(96, 0.75), ModelInput(64, 2.0)])
def test_onnx_metadata_round_trips(model_input) -> None:
    props = model_input.metadata()
    assert all(isinstance(v, str) for v in props.values())
    assert ModelInput.from_metadata(props) == model_input


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"image_size": "32"}, ModelInput(32)),  # exported before image_scale was recorded
        ({"image_size": "32", "image_scale": ""}, ModelInput(32)),  # a squashed model
        ({"image_size": "32", "image_scale": "0.75"}, ModelInput(32, 0.75)),
    ],
)
def test_metadata_of_older_exports_is_read(props, expected) -> None:
    assert ModelInput.from_metadata(props) == expected


@pytest.mark.parametrize(
    "props", [{}, {"image_size": "big"}, {"image_size": "32", "image_scale": "x"}]
)
def test_metadata_without_a_geometry_fails(props) -> None:
    with pytest.raises((KeyError, ValueError)):
        ModelInput.from_metadata(props)


def test_the_module_loads_without_torch_numpy_or_pil() -> None:
    """The process that builds the DAG checks predict.mode with it."""
    code = (
        "import sys, segpipe.models.model_input as m\n"
        "m.ModelInput.from_train({'image_size': 32}).split_mode_problem('sliding')\n"
        "print(sorted({'torch', 'numpy', 'PIL'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# The geometry is read from train sections, checkpoints and ONNX metadata here alone: no other
# module of the package reads image_size or image_scale back, nor tells keep_aspect apart.
SPELLED_HERE = (
    r"\[\s*[\"'](image_size|image_scale|resize)[\"']\s*\]",
    r"\.get\(\s*[\"'](image_size|image_scale|resize)[\"']",
    r"==\s*[\"']keep_aspect[\"']|[\"']keep_aspect[\"']\s*==|!=\s*[\"']keep_aspect[\"']",
)


def test_the_geometry_is_read_in_one_module() -> None:
    package = REPO / "src" / "segpipe"
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "model_input.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(re.search(pattern, line) for pattern in SPELLED_HERE):
                found.append(f"{path.relative_to(package)}:{number}: {line.strip()}")
    assert not found, "read the geometry with segpipe.models.model_input:\n" + "\n".join(found)
