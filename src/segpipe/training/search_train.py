"""One rung of a successive-halving search for one candidate (rule search_train).

A rung trains a candidate up to the rung's cumulative budget (``epochs``) on the learning-rate
schedule of the whole search (``schedule_epochs``: search.max_epochs), so a promoted candidate
continues exactly as if it had never stopped: its rung starts from the previous rung's last
checkpoint (copied into the rung's own resume folder) and trains the epochs after it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segpipe.models.checkpoints import copy_checkpoint
from segpipe.training.lock import hold_resume_state
from segpipe.training.train import train_model

logger = logging.getLogger(__name__)


def train_rung(
    previous: Sequence[str | os.PathLike], resume_dir: str | os.PathLike, **train: Any
) -> dict[str, Any]:
    """:func:`segpipe.training.train.train_model` into ``resume_dir``, first seeded with the
    previous rung's ``last.pt`` and ``best.pt`` (``previous``: their paths, none for rung 0)
    unless it holds a newer resume state (a rerun of a killed rung resumes from its own)."""
    resume = Path(resume_dir)
    own = resume / "last.pt"
    with hold_resume_state(resume):  # seeded and trained by this process alone
        if previous and not (own.exists() and own.stat().st_mtime > _newest(previous)):
            for path in previous:
                logger.info("starting from %s", path)
                copy_checkpoint(path, resume / Path(path).name)
        return train_model(resume_dir=resume, **train)


def _newest(paths: Sequence[str | os.PathLike]) -> float:
    return max(os.stat(path).st_mtime for path in paths)
