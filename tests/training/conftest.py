"""Fixtures of the training tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """train_model and predict_split set torch's thread count; leave it as found."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
