"""Optimiser and schedule state compared across a resume."""

from __future__ import annotations

from typing import Any

import torch

# What a checkpoint holds that the rungs must reproduce bit for bit.
STATE = ("model", "optimizer", "scheduler", "scaler", "epoch", "best_epoch", "best_score")


def assert_same_state(a: Any, b: Any, where: str = "") -> None:
    """Equal nested checkpoint contents, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
