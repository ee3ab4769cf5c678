"""What a trained model takes as input: its images' geometry (:class:`ModelInput`).

A model is trained on images squashed to ``train.image_size`` square (``train.resize: squash``),
or on images resized by ``train.image_scale`` with their aspect ratio kept (``keep_aspect``),
from which training cuts random ``image_size`` crops. Prediction repeats that: a squashed
model's images are resized to its size, or scored in sliding windows of it; a kept-aspect
model's are first resized by its scale. The geometry is read once, from a train section (a
config's or a checkpoint's, :meth:`ModelInput.from_train`) or from an ONNX file's metadata
(:meth:`ModelInput.from_metadata`, written by :meth:`ModelInput.metadata`), and training,
prediction, ONNX export and the command line ask it.

Light to import (no torch, numpy or PIL): the process that builds the DAG checks a config's
prediction mode with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SQUASH, KEEP_ASPECT = "squash", "keep_aspect"
RESIZES = (SQUASH, KEEP_ASPECT)  # train.resize
RESIZE, SLIDING = "resize", "sliding"  # predict.mode
SLIDING_NEEDS_SCALE = (
    "sliding windows need images kept at their scale (train.resize: keep_aspect); squashed "
    "images are predicted whole (mode: resize)"
)


@dataclass(frozen=True)
class ModelInput:
    """The geometry of a model's input images: ``size`` (``train.image_size``), what images
    are squashed to, or the side of the crops trained on and of the sliding windows; ``scale``
    (``train.image_scale`` with ``train.resize: keep_aspect``), the factor images are resized
    by with their aspect ratio kept, None for squashed images."""

    size: int
    scale: float | None = None

    @classmethod
    def from_train(cls, train: Mapping[str, Any]) -> ModelInput:
        """The geometry of a train section, a config's or a checkpoint's (one written before
        ``train.resize`` existed trained on squashed images)."""
        keeps_aspect = train.get("resize", SQUASH) == KEEP_ASPECT
        return cls(int(train["image_size"]), float(train["image_scale"]) if keeps_aspect else None)

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any]) -> ModelInput:
        """The geometry of the model a checkpoint holds (its recorded train section)."""
        return cls.from_train(ckpt["config"]["train"])

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> ModelInput:
        """The geometry an ONNX file's metadata records (:meth:`metadata`; a file written
        before ``image_scale`` was recorded holds a squashed model). KeyError or ValueError
        where ``image_size`` is missing or no number."""
        scale = props.get("image_scale") or None
        return cls(int(props["image_size"]), float(scale) if scale else None)

    def metadata(self) -> dict[str, str]:
        """The geometry as ONNX metadata_props: ``image_size`` and ``image_scale`` (empty for
        a squashed model)."""
        return {
            "image_size": str(self.size),
            "image_scale": "" if self.scale is None else str(self.scale),
        }

    @property
    def keeps_aspect(self) -> bool:
        """Whether images are kept at a scale, their aspect ratio kept, rather than squashed."""
        return self.scale is not None

    @property
    def crop(self) -> int | None:
        """The side of the random crops training takes of each sample (kept-aspect images);
        None: squashed samples are trained on whole."""
        return self.size if self.keeps_aspect else None

    @property
    def default_mode(self) -> str:
        """How an image is predicted unless told: in sliding windows at the model's scale, or
        resized whole to its size."""
        return SLIDING if self.keeps_aspect else RESIZE

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        """An image's (height, width) at the model's scale, as preprocess resized it (only for
        kept-aspect models)."""
        from segpipe.data.preprocess import scaled_size  # numpy and PIL: not for the DAG

        assert self.scale is not None, "a squashed model has no scale"
        return scaled_size(height, width, self.scale)

    def split_mode_problem(self, mode: str) -> str | None:
        """Why a split's preprocessed images cannot be predicted by ``mode``, or None: a
        squashed model's samples are squashed already, so sliding windows would slide over a
        square of the training size (:data:`SLIDING_NEEDS_SCALE`)."""
        return SLIDING_NEEDS_SCALE if mode == SLIDING and not self.keeps_aspect else None
