"""The optimisers of ``train.optimizer``, by the names a config writes (:data:`OPTIMIZERS`).

- ``adamw``: AdamW (decoupled weight decay), torch's betas and eps;
- ``sgd``: SGD with ``train.momentum`` (heavy-ball, as torch's SGD; usually with a larger
  ``train.lr`` than AdamW's, 0.01 to 0.1) and ``train.weight_decay`` as an L2 penalty.

Both take ``train.lr`` (the peak of the schedule, :mod:`segpipe.training.schedule`) and
``train.weight_decay``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

Parameters = Iterable[torch.nn.Parameter]


def _adamw(params: Parameters, lr: float, weight_decay: float, momentum: float):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _sgd(params: Parameters, lr: float, weight_decay: float, momentum: float):
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


# The optimisers of config option ``train.optimizer``, by name.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adamw": _adamw, "sgd": _sgd}


def unknown_optimizer(name: str) -> str | None:
    """Why ``name`` is no optimiser, naming the valid ones; None for a known one."""
    if name in OPTIMIZERS:
        return None
    return f"config option 'train.optimizer': unknown '{name}'; valid: {list(OPTIMIZERS)}"


def build_optimizer(
    name: str, params: Parameters, *, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    """The optimiser ``train.optimizer`` names over ``params``; ValueError naming the valid
    names for an unknown one."""
    if (problem := unknown_optimizer(name)) is not None:
        raise ValueError(problem)
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, momentum=momentum)
