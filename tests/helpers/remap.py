"""Masks to remap, the remap rule's function run on a folder, and a digest of a tree of files."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from segpipe.data.remap import remap_dataset

SIZE = 16
TABLE = {0: 0, 255: 1}
IGNORE_VALUE = 128


def half_mask(size: int = SIZE) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[:, size // 2 :] = 255
    return mask


def solid(color, size: int = SIZE) -> np.ndarray:
    return np.full((size, size, 3), color, dtype=np.uint8)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (names included), to prove nothing was modified."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


def run_remap(root: Path, out: Path, **kwargs) -> tuple[pd.DataFrame | None, _Records]:
    handler = _Records()
    logger = logging.getLogger("segpipe")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        options = dict(
            layout="folder",
            table=TABLE,
            ignore_value=IGNORE_VALUE,
            threads=2,
            max_quarantine_fraction=0.5,
        )
        options.update(kwargs)
        index = remap_dataset(
            root, out / "masks", out / "index.csv", out / "quarantine.csv", **options
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return index, handler
