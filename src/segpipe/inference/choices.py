"""The prediction choices a user writes: the flips of ``predict.tta`` / ``--tta``, the modes of
``predict.mode`` / ``--mode`` and the default ONNX opset of ``segpipe export``.

Light to import (no torch): the command line builds its parser from them, and ``segpipe
verify``, ``segpipe plan --help`` or ``segpipe --help`` need no model.
"""

from __future__ import annotations

from segpipe.models.model_input import RESIZE, SLIDING

FLIPS = {"hflip": 3, "vflip": 2}  # predict.tta: the (B, C, H, W) dimension each flip reverses
MODES = (RESIZE, SLIDING)  # predict.mode
DEFAULT_OPSET = 17  # segpipe export --opset
