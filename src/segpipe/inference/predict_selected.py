"""New images predicted by the run a comparison selects (rule ``infer_selected``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segpipe.evaluation.selection import selected_run, validation_score
from segpipe.inference.folder import predict_folder
from segpipe.io import write_text

logger = logging.getLogger(__name__)


def predict_selected(
    folder: str | os.PathLike,
    out_dir: str | os.PathLike,
    runs: Mapping[str, Mapping[str, Any]],
    models: Mapping[str, Mapping[str, Any]],
    *,
    classes: Sequence[str],
    threads: int = 1,
    untracked: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Predict the images of ``folder`` into ``out_dir`` (:func:`segpipe.inference.folder.predict_folder`)
    with the run the leaderboard selects, of ``runs`` (name -> the ``val_metrics`` and
    ``crossval_metrics`` of :func:`validation_score`, in declared order); ``models[name]`` holds
    its ``checkpoints`` and predict options, ``untracked[name]`` the options that change only
    how fast it runs (predict.batch_size, passed untracked: segpipe.params). Writes ``run.json`` (run, val_miou, checkpoints)
    and returns the run's name."""
    scores = {name: validation_score(**paths) for name, paths in runs.items()}
    name = selected_run(scores)
    options = {**models[name], **(untracked or {}).get(name, {})}
    checkpoints = list(options.pop("checkpoints"))
    logger.info("predicting %s with the selected run %s", folder, name)
    predict_folder(
        checkpoints, Path(folder), Path(out_dir), classes=classes, threads=threads, **options
    )
    selected = {"run": name, "val_miou": scores[name], "checkpoints": checkpoints}
    write_text(Path(out_dir) / "run.json", json.dumps(selected, indent=2) + "\n")
    return name
