"""Exporting a trained model to ONNX: ``segpipe export`` and rule export.

The file takes ``images``, ImageNet-normalised float32 (B, 3, H, W) as
:func:`segpipe.inference.engine.normalized` makes them, and gives ``logits`` (B, C, H, W); batch, height
and width are free. Its ``metadata_props`` make it self-describing: ``classes`` (a JSON list),
``image_size``, ``arch``, ``encoder`` and ``ignore_index``, so ``segpipe predict --onnx`` needs
nothing but the file and onnxruntime. They also record the checkpoint it was exported from:
``checkpoint`` (its absolute path) and ``checkpoint_sha256`` (the digest of the file), by which
``segpipe predict --onnx`` tells an ONNX file left from before a retrain (:func:`stale_reason`).

The exporter is torch.onnx's TorchScript one (``dynamo=False``). The torch.export-based one
needs two more packages (onnxscript, onnx-ir), takes several times as long, and, tried on every
smp architecture with free height and width, gave silently wrong logits at a second size for
UPerNet and a model that fails at run time for PSPNet, where the TorchScript exporter refuses
both at export time; both give the same logits for the others (Unet, Unet++, FPN, DeepLabV3(+),
Linknet, MAnet, Segformer).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segpipe.inference.choices import DEFAULT_OPSET
from segpipe.io import atomic_path, file_sha256
from segpipe.logs import UserError
from segpipe.models.argmax import class_ids
from segpipe.models.checkpoints import load_checkpoint, model_from_checkpoint
from segpipe.models.device import normalize
from segpipe.models.model_input import ModelInput

logger = logging.getLogger(__name__)
INPUT, OUTPUT = "images", "logits"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
METADATA_KEYS = ("classes", "image_size", "arch", "encoder", "ignore_index", "image_scale")
CHECKPOINT_KEYS = ("checkpoint", "checkpoint_sha256")


class ExportError(UserError, ValueError):
    """A checkpoint that cannot be exported, or a file that is not a segpipe ONNX model."""


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type where it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``; raises ExportError naming a file that is not a readable
    segpipe checkpoint (no model weights or config)."""
    try:
        ckpt = load_checkpoint(path)
    except RuntimeError as exc:
        raise ExportError(" ".join(str(exc).split())) from None
    if not isinstance(ckpt, dict) or not {"model", "config"} <= ckpt.keys():
        raise ExportError(f"{path}: not a segpipe checkpoint (no model weights and config)")
    return ckpt


def metadata(config: dict[str, Any]) -> dict[str, str]:
    """The ONNX metadata_props of a checkpoint's config: its classes (JSON), input geometry
    (:meth:`segpipe.models.model_input.ModelInput.metadata`: training size, and the scale of a
    model trained on images kept at one), architecture, encoder and ignore_index."""
    train = config["train"]
    return {
        "classes": json.dumps(list(config["classes"])),
        **ModelInput.from_train(train).metadata(),
        "arch": str(train["arch"]),
        "encoder": str(train["encoder"]),
        "ignore_index": str(config.get("ignore_index", "")),
    }


def checkpoint_metadata(checkpoint: str | Path) -> dict[str, str]:
    """The metadata_props that name the checkpoint an ONNX file is exported from."""
    return {
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_sha256": file_sha256(checkpoint),
    }


def stale_reason(onnx_path: str | Path, props: dict[str, str]) -> str | None:
    """Why the ONNX file at ``onnx_path`` (metadata ``props``) is not its checkpoint's model
    any more, or None: the checkpoint it was exported from, found beside it (by the recorded
    file name) or at the recorded path, has another sha256 now. None as well when no such
    checkpoint exists (an ONNX file used on its own) or the file records no digest."""
    recorded, digest = props.get("checkpoint"), props.get("checkpoint_sha256")
    if not recorded or not digest:
        return None
    beside = Path(onnx_path).parent / Path(recorded).name
    checkpoint = next((c for c in (beside, Path(recorded)) if c.is_file()), None)
    if checkpoint is None or file_sha256(checkpoint) == digest:
        return None
    return (
        f"{onnx_path} was exported from another {checkpoint.name} than {checkpoint} "
        f"(checkpoint sha256 differs): re-export with `segpipe export {checkpoint} -o "
        f"{onnx_path}`, or pass --allow-stale-onnx to predict with it anyway"
    )


def _trace(model: torch.nn.Module, sample: torch.Tensor, path: Path, opset: int) -> None:
    """Write ``model`` traced on ``sample`` to ``path`` with free batch, height and width."""
    with warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (module docstring); its deprecation
        # notices would only repeat that choice in every log.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (sample,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_axes={INPUT: DYNAMIC_AXES, OUTPUT: DYNAMIC_AXES},
            do_constant_folding=True,
        )


def _add_metadata(path: Path, props: dict[str, str]) -> None:
    """Store ``props`` as the ONNX file's metadata_props and check the file (onnx.checker)."""
    import onnx

    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))


def export_onnx(
    checkpoint: str | Path, out_path: str | Path, *, opset: int = DEFAULT_OPSET
) -> Path:
    """Export the model of ``checkpoint`` to ``out_path`` (ONNX, opset ``opset``), traced at its
    training size with free batch, height and width, with the metadata of :func:`metadata`.
    The file appears atomically once onnx.checker accepts it. Raises ExportError naming the
    checkpoint when it is not one or its architecture cannot be exported."""
    ckpt = read_checkpoint(checkpoint)
    config = ckpt["config"]
    model = model_from_checkpoint(ckpt).eval()
    size = ModelInput.from_checkpoint(ckpt).size
    out = Path(out_path)
    with atomic_path(out) as tmp:
        try:
            _trace(model, torch.zeros(1, 3, size, size), tmp, opset)
        except (RuntimeError, ValueError) as exc:  # torch.onnx's errors are RuntimeErrors
            raise ExportError(
                f"{checkpoint}: {config['train']['arch']} cannot be exported to ONNX with free "
                f"height and width ({_first_line(exc)})"
            ) from None
        _add_metadata(tmp, {**metadata(config), **checkpoint_metadata(checkpoint)})
    logger.info(
        "exported %s to %s (opset %d, classes %s, image size %d)",
        checkpoint,
        out,
        opset,
        config["classes"],
        size,
    )
    return out


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an ONNX file that :func:`export_onnx` wrote (its metadata names the
    classes, training size, architecture and encoder): the only file an export replaces."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf's DecodeError and the like: not an ONNX file
        return False
    return {"classes", "image_size", "arch", "encoder"} <= {p.key for p in proto.metadata_props}


def onnx_session(path: str | Path, *, threads: int = 0):
    """An onnxruntime session of ``path`` on the CPU (``threads``: 0 for onnxruntime's default).
    Raises ExportError naming a file that onnxruntime cannot load."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's errors (InvalidProtobuf, NoSuchFile, ...) are bare
        raise ExportError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None


def read_metadata(session, path: str | Path) -> dict[str, Any]:
    """The metadata of a session of a file :func:`export_onnx` wrote, as stored (arch,
    encoder, ignore_index, the checkpoint's path and digest), with ``classes`` read as a list
    and ``input`` its :class:`~segpipe.models.model_input.ModelInput`. Raises ExportError
    naming a file without them."""
    props = session.get_modelmeta().custom_metadata_map
    try:
        classes = json.loads(props["classes"])
        model_input = ModelInput.from_metadata(props)
    except (KeyError, ValueError) as exc:
        raise ExportError(
            f"{path}: no segpipe metadata ({exc}); write the file with segpipe export"
        ) from None
    if not isinstance(classes, list) or not classes:
        raise ExportError(f"{path}: metadata 'classes' is not a list of class names")
    return {**props, "classes": [str(c) for c in classes], "input": model_input}


def parity(
    checkpoint: str | Path, onnx_path: str | Path, images: torch.Tensor | np.ndarray
) -> dict[str, float]:
    """Logits of the checkpoint's torch model and of the ONNX file (onnxruntime, CPU) on the
    same normalised float32 batch ``images`` (B, 3, H, W): the largest absolute difference and
    the fraction of pixels whose argmax class agrees."""
    x = torch.as_tensor(images, dtype=torch.float32)
    model = model_from_checkpoint(read_checkpoint(checkpoint)).eval()
    with torch.no_grad():
        expected = model(x)
    session = onnx_session(onnx_path)
    got = torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])
    return {
        "max_abs_logit_diff": float((got - expected).abs().max()),
        "argmax_agreement": float((class_ids(got, 1) == class_ids(expected, 1)).float().mean()),
    }


def random_batch(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Random uint8 images of ``shape`` (B, 3, H, W), normalised as prediction normalises them."""
    rng = np.random.default_rng(seed)
    pixels = torch.from_numpy(rng.integers(0, 256, tuple(shape), dtype=np.uint8))
    return normalize(pixels, channels_last=False)
