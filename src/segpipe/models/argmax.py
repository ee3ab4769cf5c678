"""The predicted class of each pixel, from class scores: the one reduction that prediction,
test-time augmentation, sliding windows, training's validation and previews, and the ONNX
parity check all use (:func:`class_ids`).

``torch.argmax`` over the class dimension is slow on the CPU: it reduces across memory strided
by a whole image plane, about ten times slower than ``Tensor.max(dim).indices`` for the
probabilities of one image or a batch (docs/performance.md). ``max(dim).indices`` gives the
same indices: torch documents that on ties it returns the index of the first maximal value, as
``torch.argmax`` and ``numpy.argmax`` do, and its CPU kernel
(``aten/src/ATen/native/cpu/TensorCompareKernel.cpp``, ``max_kernel_impl``) replaces the running
maximum only with a value strictly greater, or NaN (which then wins, as it does for
``argmax``). tests/models/test_argmax.py checks both against ``numpy.argmax`` on ties, for the
dtypes and memory layouts prediction and training use.
"""

from __future__ import annotations

import torch


def class_ids(scores: torch.Tensor, dim: int) -> torch.Tensor:
    """The index of the highest score along ``dim`` (int64, that dimension removed): the class
    of each pixel for scores or probabilities (C, H, W) with ``dim`` 0, or (B, C, H, W) with
    ``dim`` 1. On ties the lowest class id wins, as with ``torch.argmax``, whose result this
    equals on every input, NaN included."""
    return scores.max(dim).indices
