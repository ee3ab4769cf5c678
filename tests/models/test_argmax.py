"""The predicted class of each pixel (segpipe.models.argmax.class_ids): the same indices as
torch.argmax and numpy.argmax (documented to return the first occurrence), the lowest class id on
ties, for the dtypes, layouts and shapes prediction and training reduce."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segpipe.models.argmax import class_ids

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def first_max(scores: torch.Tensor, dim: int) -> np.ndarray:
    """numpy.argmax, which returns the first of equal maxima (numpy's documentation)."""
    return np.argmax(scores.float().numpy(), axis=dim)


def layouts(x: torch.Tensor) -> list[torch.Tensor]:
    """``x`` contiguous, channels-last (a batch), and with its last two axes' strides swapped."""
    views = [x, x.transpose(-1, -2).contiguous().transpose(-1, -2)]
    if x.dim() == 4:
        views.append(x.contiguous(memory_format=torch.channels_last))
    return views


# Scores drawn from a few values: most pixels have ties, many between every class.
TIED = hnp.arrays(
    np.float32,
    st.one_of(
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
        hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=6),
    ),
    elements=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
)


@settings(max_examples=150, deadline=None)
@given(TIED, st.sampled_from(DTYPES))
def test_ties_go_to_the_lowest_class_id_as_argmax(scores: np.ndarray, dtype) -> None:
    dim = scores.ndim - 3  # (C, H, W): 0; (B, C, H, W): 1
    x = torch.from_numpy(scores).to(dtype)
    expected = first_max(x, dim)
    for view in layouts(x):
        got = class_ids(view, dim)
        assert got.dtype == torch.int64
        assert np.array_equal(got.numpy(), expected)
        assert torch.equal(got, view.argmax(dim))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("shape", "dim"), [((3, 375, 500), 0), ((12, 96, 128), 0), ((16, 3, 64, 64), 1)]
)
def test_ties_in_images_of_real_sizes_on_every_thread(shape, dim, threads) -> None:
    """Sizes that torch splits over threads: each thread's part keeps the first maximum."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rng = np.random.default_rng(threads)
        x = torch.from_numpy(rng.integers(0, 3, shape).astype(np.float32)) / 2
        assert np.array_equal(class_ids(x, dim).numpy(), first_max(x, dim))
        assert torch.equal(class_ids(x, dim), x.argmax(dim))
    finally:
        torch.set_num_threads(before)


def test_equal_scores_give_class_0_and_a_tie_the_lower_of_the_tied() -> None:
    columns = [[1 / 3, 1 / 3, 1 / 3], [0.1, 0.45, 0.45], [0.4, 0.2, 0.4], [0.2, 0.3, 0.5]]
    p = torch.tensor(columns).T[:, None, :]  # (C, 1, W): one pixel per column
    assert class_ids(p, 0).tolist() == [[0, 1, 0, 2]]


def test_nan_wins_as_with_argmax() -> None:
    """A NaN score (a diverged model) is the maximum, the first of several, as torch.argmax."""
    nan = float("nan")
    p = torch.tensor([[0.1, 0.9, nan], [nan, 0.05, nan], [0.8, 0.05, 0.9]])[:, None, :]
    assert class_ids(p, 0).tolist() == p.argmax(0).tolist() == [[1, 0, 0]]
