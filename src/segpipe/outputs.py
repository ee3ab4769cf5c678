"""Where segpipe may write: every command checks its outputs here before any work, and the
pipeline the paths its config names (:func:`path_option_problems`) before any job.

- :func:`check_clear`: an output that is, holds or lies inside a path it reads (an input, a
  checkpoint, the config, the dataset), or that is or holds the working directory or the
  segpipe repository, is refused in one line. Paths are compared with their symbolic links
  followed and, where they exist, by identity (device and inode): a hard link, a bind mount,
  ``..``, a trailing slash or another case on a case-insensitive disk is the same path.
- :func:`check_folder`: a folder output that holds files is replaced (``--overwrite``) only
  when its writer wrote it: it holds :data:`MANIFEST`, listing every file in it, and no file
  besides (:func:`write_manifest` writes it last). A folder segpipe did not write is never
  replaced, whatever the flags.
- :func:`check_file`: a file output replaces only a file that its writer recognises as its own
  (an ONNX export, a verify summary).

A symbolic link given as an output is followed only on those terms: the folder or file it
points to is written when it may be replaced; a dangling link or a loop is refused. Writes the
file system refuses are :class:`segpipe.io.WriteError` (:mod:`segpipe.io`).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from segpipe.io import WriteError, check_writable, write_json
from segpipe.logs import UserError

MANIFEST = ".segpipe-outputs.json"
"""In a folder that a segpipe command wrote whole: the writer and every file it wrote."""
COUNTED = 10_000  # files counted in a folder that a command will not replace


class OutputError(UserError, ValueError):
    """An output path that would overwrite or delete what its writer did not write, or what
    it reads."""


@dataclass(frozen=True)
class Read:
    """A path that an output must keep clear of, and what it is in words (``the checkpoint``).
    ``outputs_inside``: an output may lie inside it (the working directory, the repository,
    the folder of an input file); it must still not be it or hold it."""

    path: Path
    what: str
    outputs_inside: bool = False


def real_path(path: str | os.PathLike, option: str = "") -> Path:
    """``path`` absolute, its symbolic links followed as far as they lead; OutputError naming
    ``option`` for a loop of links."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except (FileNotFoundError, NotADirectoryError):
        return Path(os.path.realpath(path))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(f"{option} {path}: a loop of symbolic links".strip()) from None
        raise OutputError(f"{option} {path}: {exc.strerror}".strip()) from None


class _Identities:
    """(device, inode) of paths, each looked up once."""

    def __init__(self) -> None:
        self.known: dict[Path, tuple[int, int] | None] = {}

    def __call__(self, path: Path) -> tuple[int, int] | None:
        if path not in self.known:
            try:
                info = os.stat(path)
                self.known[path] = (info.st_dev, info.st_ino)
            except OSError:
                self.known[path] = None
        return self.known[path]

    def among(self, path: Path, folders: Iterable[Path]) -> bool:
        """Whether ``path`` is one of ``folders``, by name or by identity."""
        folders = list(folders)
        if path in folders:
            return True
        mine = self(path)
        return mine is not None and any(self(folder) == mine for folder in folders)


def relation(out: Path, read: Path, identities: _Identities | None = None) -> str | None:
    """How the real path ``out`` stands to the real path ``read``: ``is``, ``holds``, ``lies
    inside``, or None."""
    same = identities or _Identities()
    if same.among(out, [read]):
        return "is"
    if same(out) is not None and same.among(out, read.parents):
        return "holds"
    if same(read) is not None and same.among(read, out.parents):
        return "lies inside"
    if out in read.parents:
        return "holds"
    if read in out.parents:
        return "lies inside"
    return None


def protected_places() -> list[Read]:
    """What no output may be or hold: the working directory and, when segpipe runs from a
    checkout, its repository."""
    places = [Read(Path.cwd(), "the working directory", outputs_inside=True)]
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "Snakefile").is_file():
        places.append(Read(checkout, "the segpipe repository", outputs_inside=True))
    return places


def check_clear(out: str | os.PathLike, option: str, reads: Iterable[Read]) -> Path:
    """The real path of the output ``out`` (given as ``option``), when it is, holds and lies
    inside none of ``reads`` (except where a read allows outputs inside it) nor the
    :func:`protected_places`; else OutputError naming both."""
    real, identities = real_path(out, option), _Identities()
    for read in [*reads, *protected_places()]:
        found = relation(real, real_path(read.path), identities)
        if found is None or (found == "lies inside" and read.outputs_inside):
            continue
        alias = ""
        if found == "is" and real != real_path(read.path):
            alias = " (the same file or folder under another name: a hard link or a mount)"
        raise OutputError(
            f"{option} {out} {found} {read.what} {read.path}{alias}; write the outputs elsewhere"
        )
    return real


def _not_dangling(out: Path, option: str) -> None:
    if out.is_symlink() and not out.exists():
        real_path(out, option)  # a loop says so
        raise OutputError(
            f"{option} {out}: a symbolic link to {os.readlink(out)}, which does not exist; "
            "give the folder or file itself"
        )


def _check_writable(real: Path, out: Path, option: str) -> None:
    """OutputError when ``real`` lies under a file; WriteError (exit status 3) when its folder
    is read-only or cannot be written in."""
    try:
        check_writable(real)
    except NotADirectoryError as exc:
        raise OutputError(f"{option} {out}: {exc}") from None
    except WriteError as exc:
        raise WriteError(out, exc.cause) from None


def files_below(folder: Path, limit: int | None = None) -> list[str]:
    """Every entry of ``folder`` that is not a folder (files, links of any kind, FIFOs), as
    paths relative to it, sorted; links to folders are not followed. With ``limit``, the
    first ``limit`` found (a home folder is not walked whole to be refused)."""
    found: list[str] = []
    for parent, dirs, names in os.walk(folder):
        here = Path(parent)
        links = [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in links]
        found += [(here / name).relative_to(folder).as_posix() for name in [*names, *links]]
        if limit is not None and len(found) >= limit:
            return sorted(found[:limit])
    return sorted(found)


def listed_outputs(folder: Path, writer: str) -> set[str] | None:
    """The files that ``writer`` wrote into ``folder`` (its :data:`MANIFEST`), or None when the
    folder has no such manifest of that writer."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("writer") != writer:
        return None
    files = manifest.get("files")
    return {str(f) for f in files} if isinstance(files, list) else None


def write_manifest(folder: Path, writer: str) -> None:
    """Record every file of ``folder`` as written by ``writer``: call it last, once they are."""
    files = [f for f in files_below(folder) if f != MANIFEST]
    write_json(folder / MANIFEST, {"writer": writer, "files": files})


def check_folder(
    out: str | os.PathLike,
    option: str,
    *,
    writer: str,
    reads: Iterable[Read] = (),
    overwrite: bool = False,
) -> Path:
    """The real folder to write the output folder ``out`` (given as ``option``) of ``writer``
    at, checked: clear of ``reads`` (:func:`check_clear`), a folder or nothing yet, writable,
    and empty, or (with ``overwrite``) holding only what ``writer`` wrote there. A symbolic
    link leads to the folder it points to on the same terms. Raises OutputError in one line."""
    out = Path(out)
    _not_dangling(out, option)
    real = check_clear(out, option, reads)
    if real.exists() and not real.is_dir():
        raise OutputError(f"{option} {out} is a file; give a folder")
    _check_writable(real, out, option)
    listed = listed_outputs(real, writer) if real.is_dir() else None
    # A folder segpipe did not write is refused whatever it holds: counted up to a limit.
    files = files_below(real, None if listed else COUNTED) if real.is_dir() else []
    if not files:
        return real
    held = f"{len(files)}{' or more' if len(files) == COUNTED else ''} file(s)"
    if not overwrite:
        raise OutputError(
            f"{option} {out} already holds {held}; give another folder, or --overwrite to "
            f"replace what {writer} wrote there"
        )
    if listed is None:
        raise OutputError(
            f"{option} {out} holds {held} and no {MANIFEST} of {writer}: --overwrite replaces "
            f"only a folder that {writer} wrote; move the files away or give another folder"
        )
    if foreign := [f for f in files if f not in listed and f != MANIFEST]:
        raise OutputError(
            f"{option} {out} holds {len(foreign)} file(s) that {writer} did not write "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): --overwrite "
            "replaces only its own outputs; move them away or give another folder"
        )
    return real


def check_file(
    out: str | os.PathLike,
    option: str,
    *,
    own: Callable[[Path], bool],
    what: str,
    reads: Iterable[Read] = (),
) -> Path:
    """The real path to write the output file ``out`` (given as ``option``) at, checked: clear
    of ``reads`` (:func:`check_clear`), not a folder, writable, and new or a file that ``own``
    recognises as ``what`` (an earlier output of the same writer). A symbolic link leads to the
    file it points to on the same terms. Raises OutputError in one line."""
    out = Path(out)
    _not_dangling(out, option)
    real = check_clear(out, option, reads)
    if real.is_dir():
        raise OutputError(f"{option} {out}: is a folder; give a file name")
    _check_writable(real, out, option)
    if real.exists() and not stat.S_ISREG(real.stat().st_mode):
        raise OutputError(
            f"{option} {out}: not a regular file (a device, FIFO or socket); give a file name"
        )
    if real.exists() and not own(real):
        raise OutputError(
            f"{option} {out}: a file that is not {what} is there; it is replaced only by a "
            "new one of its kind: give a new file name or move it away"
        )
    return real


def path_option_problems(
    written: dict[str, str | os.PathLike | None], read: dict[str, str | os.PathLike | None]
) -> list[str]:
    """One line per place the pipeline writes (``written``: what names it, say ``config option
    'pretrained.cache'`` or ``results/``, -> the path) that is, holds or lies in a place it only
    reads (``read``, alike: the dataset, infer.images); None paths are left out."""
    problems = []
    for writer, out in written.items():
        for reader, path in read.items():
            if out is None or path is None:
                continue
            try:
                found = relation(real_path(out), real_path(path))
            except OutputError as exc:
                problems.append(f"{reader}: {exc}")
                continue
            if found is not None:
                problems.append(
                    f"{writer} '{out}' {found} {reader} '{path}': the pipeline writes the one "
                    "and only reads the other; keep them apart"
                )
    return problems
