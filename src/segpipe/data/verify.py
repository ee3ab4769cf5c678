"""Check a dataset before training and summarise it, like nnU-Net's dataset integrity check.

:func:`verify_dataset` runs the same checks as the remap step (every image and mask decoded,
paired, sized and mapped through the remap table) without writing anything, and returns a
summary (:func:`segpipe.data.summary.summarize`): counts, image sizes, real formats, mask
values and class pixel shares, warnings and problems. :func:`format_summary` renders it as text;
``segpipe verify`` (:mod:`segpipe.cli`) prints it, and the remap step logs it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segpipe.data.dataset_layouts import LAYOUT_DIRS
from segpipe.data.images import DEFAULT_MAX_IMAGE_PIXELS
from segpipe.data.remap import check_pairs, index_with_spec
from segpipe.data.summary import format_summary, logged_warnings, summarize

__all__ = ["format_summary", "summarize", "verify_dataset"]

logger = logging.getLogger(__name__)


def verify_dataset(
    root: str | Path,
    *,
    layout: str = "folder",
    images_dir: str | None = None,
    masks_dir: str | None = None,
    mask_suffix: str = "",
    split_lists: dict[str, str | None] | None = None,
    table: dict[int, int] | None = None,
    colors: list[dict] | None = None,
    ignore_value: int | None = None,
    unmapped: str = "error",
    ignore_index: int = 255,
    class_names: Sequence[str] | None = None,
    threads: int = 1,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
) -> dict[str, Any]:
    """Check ``root`` as the remap step would, write nothing, and return :func:`summarize`'s
    summary. Without ``table`` or ``colors`` the raw mask values are counted, not mapped; an image
    or mask of more than ``max_image_pixels`` pixels is a problem, not decoded. The warnings
    indexing logs (an id in two lists, pairs in no list, files in sub-folders, no pairs at all)
    are the summary's too: its warning count and verdict hold every warning."""
    with logged_warnings() as index_warnings:
        spec, frame, index_quarantine = index_with_spec(
            layout,
            root,
            table=table,
            colors=colors,
            ignore_value=ignore_value,
            unmapped=unmapped,
            ignore_index=ignore_index,
            images_dir=images_dir,
            masks_dir=masks_dir,
            mask_suffix=mask_suffix,
            split_lists=split_lists,
        )
        if frame.empty:
            logger.warning(
                "no pairs found in %s (images %s, masks %s)",
                root,
                images_dir or LAYOUT_DIRS[layout][0],
                masks_dir or LAYOUT_DIRS[layout][1],
            )
    results = check_pairs(frame, spec, None, threads, max_image_pixels) if len(frame) else []
    return summarize(
        frame,
        index_quarantine,
        results,
        spec,
        class_names=class_names,
        root=root,
        layout=layout,
        index_warnings=index_warnings,
    )
