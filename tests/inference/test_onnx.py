"""ONNX export (``segpipe export``, rule export) and predicting through onnxruntime alone
(``segpipe predict --onnx``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from segpipe.cli import main
from segpipe.inference.engine import predict_sliding
from segpipe.inference.folder import InferError, load_model, load_onnx_model
from segpipe.inference.onnx import ExportError, export_onnx, parity, random_batch
from segpipe.models.build import build_model
from segpipe.models.checkpoints import LEDGER, save_checkpoint
from segpipe.models.model_input import ModelInput

from helpers.repo import BIN, REPO, TINY_MODEL, copy_workflow, planned_rules, snakemake
from helpers.train import CLASSES, IGNORE, IMAGE_SIZE, tiny_splits
from helpers.train import train as train_tiny

SHAPES = [(1, 3, 32, 32), (2, 3, 48, 64)]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=8)


@pytest.fixture(scope="module")
def checkpoint(data, tmp_path_factory) -> Path:
    _, paths = train_tiny(data, tmp_path_factory.mktemp("model"), epochs=8, lr=0.01)
    return paths["best_path"]


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory) -> Path:
    return export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")


def segpipe(*args) -> subprocess.CompletedProcess:
    """The installed command in a process of its own."""
    return subprocess.run(
        [str(BIN / "segpipe"), *map(str, args)], capture_output=True, text=True, timeout=300
    )


def in_process(capsys, *args) -> tuple[int, str, str]:
    """segpipe's main in this process (no import time): exit status, stdout, stderr."""
    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def masks(folder: Path) -> dict[str, np.ndarray]:
    """The masks of a prediction folder by their path below masks/ (sub-folders included)."""
    root = folder / "masks"
    return {
        p.relative_to(root).as_posix(): np.asarray(Image.open(p))
        for p in sorted(root.rglob("*.png"))
    }


# --- the file -------------------------------------------------------------------------------


def test_export_writes_a_checked_self_describing_file(onnx_file) -> None:
    proto = onnx.load(str(onnx_file))
    onnx.checker.check_model(proto)
    props = {p.key: p.value for p in proto.metadata_props if not p.key.startswith("checkpoint")}
    assert props == {
        "classes": json.dumps(CLASSES),
        "image_size": str(IMAGE_SIZE),
        "arch": "Unet",
        "encoder": TINY_MODEL["encoder"],
        "ignore_index": str(IGNORE),
        "image_scale": "",  # trained on squashed images
    }
    (images,), (logits,) = proto.graph.input, proto.graph.output
    assert (images.name, logits.name) == ("images", "logits")
    assert images.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    in_dims = [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in logits.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 3, "height", "width"]
    assert out_dims == ["batch", len(CLASSES), "height", "width"]
    assert [p.name for p in onnx_file.parent.iterdir()] == ["model.onnx"]  # no temporaries


def test_batch_height_and_width_are_free(onnx_file) -> None:
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for b, c, h, w in SHAPES:
        x = random_batch((b, c, h, w)).numpy()
        (logits,) = session.run(["logits"], {"images": x})
        assert logits.shape == (b, len(CLASSES), h, w) and logits.dtype == np.float32


@pytest.mark.parametrize("shape", SHAPES)
def test_onnxruntime_gives_torchs_logits(checkpoint, onnx_file, shape) -> None:
    result = parity(checkpoint, onnx_file, random_batch(shape, seed=sum(shape)))
    assert result["max_abs_logit_diff"] <= 1e-3, result
    assert result["argmax_agreement"] >= 0.999, result


def test_onnx_model_has_the_checkpoints_classes_size_and_probabilities(
    checkpoint, onnx_file
) -> None:
    onnx_model = load_onnx_model(onnx_file, threads=1)
    torch_model = load_model([checkpoint], device="cpu")
    assert (onnx_model.classes, onnx_model.input) == (CLASSES, ModelInput(IMAGE_SIZE))
    x = random_batch((2, 3, 40, 56))
    p = onnx_model.score(x)
    assert p.dtype == torch.float32 and p.device.type == "cpu"
    assert torch.allclose(p.sum(1), torch.ones(2, 40, 56), atol=1e-5)
    assert torch.allclose(p, torch_model.score(x), atol=1e-4)
    rgb = np.random.default_rng(5).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    sliding = [predict_sliding(rgb, m.score, IMAGE_SIZE) for m in (onnx_model, torch_model)]
    assert torch.allclose(*sliding, atol=1e-4)


# --- segpipe export and segpipe predict --onnx ----------------------------------------------


@pytest.mark.slow
def test_segpipe_export_writes_model_onnx_beside_the_checkpoint(
    checkpoint, tmp_path, capsys
) -> None:
    ckpt = tmp_path / "run" / "best.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(checkpoint.read_bytes())
    proc = segpipe("export", ckpt)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "model.onnx").is_file()
    assert "argmax agreement 100.00%" in proc.stdout, proc.stdout
    rc, _, err = in_process(
        capsys, "export", ckpt, "-o", tmp_path / "other" / "m.onnx", "--opset", 18
    )
    assert rc == 0, err
    assert onnx.load(str(tmp_path / "other" / "m.onnx")).opset_import[0].version == 18


@pytest.mark.parametrize("options", [[], ["--mode", "sliding", "--tta", "hflip"]])
def test_predict_onnx_gives_the_checkpoints_masks(
    data, checkpoint, onnx_file, tmp_path, capsys, options
) -> None:
    images = [Path(p) for p in pd.read_csv(data["test"]["manifest"])["image"]]
    rgb = np.random.default_rng(3).integers(0, 256, (57, 90, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "odd_size.png")
    inputs = [*images, tmp_path / "odd_size.png"]
    rc, torch_out, err = in_process(
        capsys, "predict", checkpoint, *inputs, "-o", tmp_path / "torch", *options
    )
    assert rc == 0, err
    rc, onnx_out, err = in_process(
        capsys, "predict", "--onnx", onnx_file, *inputs, "-o", tmp_path / "onnx", *options
    )
    assert rc == 0, err
    assert onnx_out == torch_out.replace(str(tmp_path / "torch"), str(tmp_path / "onnx"))
    expected, got = masks(tmp_path / "torch"), masks(tmp_path / "onnx")
    assert sorted(got) == sorted(expected) and len(got) == len(inputs)
    for name, mask in expected.items():
        assert (got[name] == mask).mean() >= 0.999, name


def pickled_list(tmp_path: Path) -> Path:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    return path


def onnx_without_metadata(tmp_path: Path) -> Path:
    path = tmp_path / "plain.onnx"
    node = onnx.helper.make_node("Identity", ["images"], ["logits"])
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        [node],
        "plain",
        [tensor("images", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [tensor("logits", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("export_an_image", "a.png: not a readable segpipe checkpoint"),
        ("export_a_pickled_list", "list.pt: not a segpipe checkpoint"),
        ("export_nothing", "missing.pt: no such checkpoint"),
        ("predict_with_a_checkpoint_as_onnx", "best.pt: not a readable ONNX model"),
        ("predict_with_text_as_onnx", "a.txt: not a readable ONNX model"),
        ("predict_with_a_foreign_onnx", "plain.onnx: no segpipe metadata"),
        ("predict_with_no_onnx_file", "missing.onnx: no such ONNX model"),
    ],
)
def test_bad_input_is_one_line(case, message, checkpoint, tmp_path, capsys) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    (tmp_path / "a.txt").write_text("not a model\n")
    out = tmp_path / "out"
    if case.startswith("export"):
        bad = {
            "export_an_image": image,
            "export_a_pickled_list": pickled_list(tmp_path),
            "export_nothing": tmp_path / "missing.pt",
        }[case]
        args = ["export", bad, "-o", out / "model.onnx"]
    else:
        bad = {
            "predict_with_a_checkpoint_as_onnx": checkpoint,
            "predict_with_text_as_onnx": tmp_path / "a.txt",
            "predict_with_a_foreign_onnx": onnx_without_metadata(tmp_path),
            "predict_with_no_onnx_file": tmp_path / "missing.onnx",
        }[case]
        args = ["predict", "--onnx", bad, image, "-o", out]
    rc, _, err = in_process(capsys, *args)
    assert rc == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"segpipe {args[0]}: error:")
    assert not out.exists()


def test_predict_without_onnx_still_needs_a_checkpoint_and_inputs(checkpoint, capsys) -> None:
    rc, _, err = in_process(capsys, "predict", checkpoint, "-o", "out")
    assert rc == 2
    assert "segpipe predict: error: the following arguments are required: IMAGE_OR_FOLDER" in err


def test_an_architecture_the_exporter_cannot_trace_is_named(tmp_path) -> None:
    model = build_model("PSPNet", TINY_MODEL["encoder"], len(CLASSES))
    train = {"arch": "PSPNet", "encoder": TINY_MODEL["encoder"], "image_size": 64}
    train["decoder_dropout"] = 0.0
    ckpt = tmp_path / "psp.pt"
    save_checkpoint(
        ckpt, {"model": model.state_dict(), "config": {"classes": CLASSES, "train": train}}
    )
    with pytest.raises(ExportError, match=r"psp\.pt: PSPNet cannot be exported to ONNX"):
        export_onnx(ckpt, tmp_path / "psp.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == [LEDGER, "psp.pt"]  # no ONNX file


def test_load_onnx_model_names_a_file_that_is_not_one(tmp_path) -> None:
    with pytest.raises(InferError, match="a.txt: not a readable ONNX model"):
        (tmp_path / "a.txt").write_text("x")
        load_onnx_model(tmp_path / "a.txt")


# --- rule export ----------------------------------------------------------------------------


@pytest.mark.slow
def test_export_rule_writes_the_runs_onnx_on_request_only(tmp_path) -> None:
    work = copy_workflow(tmp_path)
    args = ("--configfile", "config/test.yaml")
    assert "export" not in planned_rules(work, *args)  # rule all does not ask for it
    target = "results/runs/ci-tiny/train/model.onnx"
    proc = snakemake(work, target, "--cores", "2", *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    model = load_onnx_model(work / target)
    assert (model.classes, model.input.size) == (config["classes"], config["train"]["image_size"])
    assert (work / "logs" / "export" / "ci-tiny.log").is_file()
    assert (work / "benchmarks" / "export" / "ci-tiny.tsv").is_file()
    result = parity(
        work / "results/runs/ci-tiny/train/best.pt", work / target, random_batch((2, 3, 32, 32))
    )
    assert result["max_abs_logit_diff"] <= 1e-3 and result["argmax_agreement"] >= 0.999
    # A retrain writes another best.pt: the file is exported again, nothing else reruns.
    best = work / "results/runs/ci-tiny/train/best.pt"
    later = (work / target).stat().st_mtime + 10
    os.utime(best, (later, later))
    assert planned_rules(work, *args, "--cores", "1", target) == {"export": 1}


# --- an ONNX file left from before a retrain ------------------------------------------------


def onnx_beside(checkpoint: Path, onnx_file: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of the exported file beside a copy of its checkpoint, under the recorded name."""
    folder.mkdir(parents=True)
    ckpt = folder / checkpoint.name
    ckpt.write_bytes(checkpoint.read_bytes())
    onnx_copy = folder / "model.onnx"
    onnx_copy.write_bytes(onnx_file.read_bytes())
    return ckpt, onnx_copy


def props_of(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_export_records_the_checkpoints_digest(checkpoint, onnx_file) -> None:
    props = props_of(onnx_file)
    assert props["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert props["checkpoint"] == str(checkpoint.resolve())


def test_predict_refuses_an_onnx_file_of_another_checkpoint(
    checkpoint, onnx_file, tmp_path, capsys, caplog
) -> None:
    ckpt, model = onnx_beside(checkpoint, onnx_file, tmp_path / "run")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert in_process(capsys, "predict", "--onnx", model, image, "-o", tmp_path / "o1")[0] == 0
    with ckpt.open("ab") as f:  # a retrain: another best.pt beside the same model.onnx
        f.write(b"retrained")
    rc, _, err = in_process(capsys, "predict", "--onnx", model, image, "-o", tmp_path / "o2")
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{model} was exported from another {ckpt.name} than {ckpt}" in err
    assert f"re-export with `segpipe export {ckpt} -o {model}`" in err
    assert not (tmp_path / "o2").exists()
    rc, _, err = in_process(
        capsys, "predict", "--onnx", model, image, "-o", tmp_path / "o3", "--allow-stale-onnx"
    )
    assert rc == 0 and "exported from another" in caplog.text


def test_an_onnx_file_on_its_own_or_without_digest_is_used(
    checkpoint, onnx_file, tmp_path, capsys, caplog
) -> None:
    alone = tmp_path / "alone" / "model.onnx"  # no best.pt beside; the recorded one unchanged
    alone.parent.mkdir()
    alone.write_bytes(onnx_file.read_bytes())
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert in_process(capsys, "predict", "--onnx", alone, image, "-o", tmp_path / "o1")[0] == 0
    assert "checkpoint digest" not in caplog.text
    proto = onnx.load(str(onnx_file))
    kept = [p for p in proto.metadata_props if not p.key.startswith("checkpoint")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    older = tmp_path / "older.onnx"
    onnx.save(proto, str(older))
    assert in_process(capsys, "predict", "--onnx", older, image, "-o", tmp_path / "o2")[0] == 0
    assert f"{older} records no checkpoint digest" in caplog.text


# --- the command's paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "{folder}"], "{folder}: is a folder; give the checkpoint file"),
        (["export", "{ckpt}", "-o", "{folder}"], "--out {folder}: is a folder; give a file name"),
        (["export", "{ckpt}", "-o", "{text}/m.onnx"], "{text} is a file, not a folder"),
        (["predict", "{folder}", "{image}", "-o", "{out}"], "is a folder; give the checkpoint"),
        (["predict", "--onnx", "{folder}", "{image}", "-o", "{out}"], "give the ONNX model file"),
        (["verify", "{text}"], "{text}: is a file, not a dataset folder"),
        (["verify", "--configfile", "{folder}"], "{folder}: is a folder; give the config file"),
        (["verify", "--configfile", "{missing}"], "config file '{missing}' not found"),
        (["verify", "--configfile", "{broken}"], "'{broken}' is not valid YAML: line 2"),
        (["verify", "--configfile", "{image}"], "'{image}' cannot be read"),
        (["verify", "{folder}", "--json", "{folder}"], "--json {folder} is the dataset {folder}"),
        (["verify", "{text}/..", "--json", "{folder}"], "--json {folder} lies inside the dataset"),
        (["verify", "{folder}", "--json", "{text}/s.json"], "{text} is a file, not a folder"),
    ],
)
def test_bad_paths_are_one_line_exit_2(args, message, checkpoint, tmp_path, capsys) -> None:
    paths = {
        "folder": tmp_path / "folder",
        "ckpt": checkpoint,
        "text": tmp_path / "a.txt",
        "image": tmp_path / "a.png",
        "out": tmp_path / "out",
        "missing": tmp_path / "missing.yaml",
        "broken": tmp_path / "broken.yaml",
    }
    paths["folder"].mkdir()
    paths["text"].write_text("not a model\n")
    paths["broken"].write_text("a: [\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(paths["image"])
    rc, _, err = in_process(capsys, *[a.format(**paths) for a in args])
    assert rc == 2, err
    assert message.format(**paths) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not paths["out"].exists() and sorted(paths["folder"].iterdir()) == []
