"""Which files of the folders and files given are predicted (``segpipe predict``, rule
``infer``, and the DAG checking infer.images before any job runs), and under which names.

Torch-free: the process that builds the DAG lists infer.images with it. The files given and
every file below the folders given are predicted, each once; a hidden file or folder, a link to
a folder, a broken link, a FIFO or socket is left out, with the reason. Outputs are named by a
file's path below the folder that holds every input, without its suffix; two files whose names
would be one (case and Unicode normalisation aside) are refused, naming both.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from segpipe.data import predictions
from segpipe.data.dataset_layouts import normalisation_twins
from segpipe.logs import UserError


class InferError(UserError, ValueError):
    """Inputs that segpipe predict cannot work with: no images, an output folder among them,
    a checkpoint of other classes."""


class OutputClashError(InferError):
    """Two input files whose outputs would be one file."""


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The files given and the files in the folders given (recursively, sorted; hidden files
    and folders left out, :func:`walk_inputs`), each once. Raises InferError for a missing
    input or when there is no file at all."""
    return [file for file, _ in find_inputs(inputs)]


def _walk(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files below ``folder``, and what is not searched there with the reason: hidden
    files and folders, links to folders, broken links, FIFOs and sockets."""
    files, left_out = [], []
    for parent, dirs, names in os.walk(folder):
        here = Path(parent)
        for name in sorted(dirs):
            if name.startswith("."):
                left_out.append(
                    (here / name, "hidden folder (its name starts with '.'), not searched")
                )
            elif (here / name).is_symlink():
                left_out.append(
                    (here / name, "link to a folder, not searched; give the folder itself")
                )
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(names):
            path = here / name
            if name.startswith("."):
                left_out.append(
                    (path, "hidden file (its name starts with '.'); give it by name to predict it")
                )
            elif path.is_symlink() and not path.exists():
                left_out.append((path, f"broken symbolic link (points to {os.readlink(path)})"))
            elif not path.is_file():
                left_out.append((path, "not a regular file (a FIFO, socket or device), not opened"))
            else:
                files.append(path)
    return sorted(files), left_out


def _files_of(item: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    if item.is_dir():
        return _walk(item)
    if item.is_file():
        return [item], []
    raise InferError(f"{item}: no such file or folder")


def walk_inputs(
    inputs: Sequence[str | Path],
) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(file, output name) of every file of ``inputs`` (:func:`find_inputs`), and (path,
    reason) of everything in the folders given that is not searched (:func:`_walk`). Raises
    InferError for a missing input, when there is no file to predict, or for two files whose
    names would be one."""
    items = [Path(item) for item in inputs]
    files: dict[str, Path] = {}
    left_out: dict[str, tuple[Path, str]] = {}
    for item in items:
        found, skipped = _files_of(item)
        for file in found:
            files.setdefault(os.path.normpath(os.path.abspath(file)), file)
        for path, reason in skipped:
            left_out.setdefault(os.path.normpath(os.path.abspath(path)), (path, reason))
    if not files:
        example = next(iter(left_out.values()), None)
        more = f" ({len(left_out)} left out; {example[0]}: {example[1]})" if example else ""
        raise InferError(f"no images in {', '.join(map(str, inputs))}: the folders are empty{more}")
    bases = [os.path.abspath(i if i.is_dir() else i.parent) for i in items]
    root = os.path.commonpath(bases)
    named = [
        (file, Path(os.path.relpath(absolute, root)).with_suffix("").as_posix())
        for absolute, file in files.items()
    ]
    _check_unique(named)
    return named, [entry for key, entry in left_out.items() if key not in files]


def find_inputs(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """(file, output name) of every file of ``inputs`` (:func:`find_images`): its path below
    the folder that holds every input, without its suffix. Raises InferError naming two files
    whose names would be one (compared ignoring case and Unicode normalisation)."""
    return walk_inputs(inputs)[0]


def _check_unique(named: Sequence[tuple[Path, str]]) -> None:
    """Raise InferError when two files would write the same outputs."""
    seen: dict[str, Path] = {}
    clashes = []
    for file, name in named:
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            twins = normalisation_twins(seen[key].name, file.name)
            why = f"; they differ only in Unicode normalisation: {twins}" if twins else ""
            clashes.append(f"{seen[key]} and {file} ({predictions.mask_name(name)}{why})")
        seen.setdefault(key, file)
    if clashes:
        raise OutputClashError(
            f"{len(clashes)} pair(s) of inputs would be predicted into the same file: "
            f"{'; '.join(clashes[:5])}. Outputs are named by the path without its suffix, "
            "case and Unicode normalisation aside; rename one of each pair"
        )
