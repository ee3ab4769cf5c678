"""Atomic file writes: a reader or a killed job never sees a half-written output.

A write goes to a temporary ``.{name}.{host}-{pid}.XXXXXXXX{suffix}`` beside the target and is
renamed onto it at the end. A writer killed with SIGKILL cannot remove its temporary, so the next
write of the same target removes the temporaries of that target whose writer is gone (see
:func:`remove_stale_temporaries`).

A write that the file system refuses (no space left, a quota, a read-only file system, no
permission) ends in a :class:`WriteError`, one line naming the output and the cause; the
temporary is removed and the previous file or folder stays as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from segpipe.logs import UserError

logger = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)
_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
_RANDOM = r"[a-z0-9_]{8}"  # the random part tempfile puts between prefix and suffix


def _temporary_pattern(target: str | None, *, with_writer: bool = True) -> re.Pattern:
    """The names of the temporaries of ``target`` (of any target when None): the target's name,
    the writer's host and pid, tempfile's random part, the suffix; ``with_writer=False``, the
    names written before host and pid were part of them, ``.{name}.XXXXXXXX{suffix}``."""
    name = re.escape(target) if target else ".+"
    writer = r"(?P<host>[A-Za-z0-9_-]+)-(?P<pid>[0-9]+)\." if with_writer else ""
    return re.compile(rf"\.(?P<target>{name})\.{writer}{_RANDOM}(?:\..*)?")


def _prefix(path: Path) -> str:
    """The start of the name of this process's temporaries for ``path``."""
    return f".{path.name}.{_HOST}-{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _stale_reason(name: str, target: str | None) -> str | None:
    """Why the directory entry ``name`` is a temporary left by a dead writer, or None.

    With ``target``, only temporaries of that target count, in the old name format too (any
    suffix); without, those of any target, old-format ones only when they end in ``.tmp``.
    """
    match = _temporary_pattern(target).fullmatch(name)
    if match:
        host, pid = match["host"], int(match["pid"])
        if host != _HOST:
            return f"written on host {host}"
        return None if _pid_alive(pid) else f"its writer, process {pid}, is gone"
    if target and _temporary_pattern(None).fullmatch(name):
        return None  # a temporary of another target whose name starts like this one
    match = _temporary_pattern(target, with_writer=False).fullmatch(name)
    if match and (name.endswith(".tmp") or _old_suffix(name, target)):
        return "an old-style temporary without its writer's pid"
    return None


def _old_suffix(name: str, target: str | None) -> bool:
    """Whether ``name`` ends as the old temporaries of ``target`` did: its own suffixes (a
    ``.train.npy.XXXXXXXX.npy``), so that a file such as ``.best.pt.backup12`` is kept."""
    suffixes = "".join(Path(target).suffixes) if target else ""
    return bool(suffixes) and name.endswith(suffixes) and len(name) > len(f".{target}.") + 8


def remove_stale_temporaries(directory: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Remove the temporaries in ``directory`` whose writer is not a live process on this host.

    A writer killed with SIGKILL (the kernel's OOM killer, Slurm after its KillWait) leaves its
    temporary file or folder behind. Those of live processes on this host stay; a temporary
    written on another host or without a pid in its name counts as stale, since Snakemake runs
    one job per output at a time: call this only on a directory whose outputs the calling job
    owns, or give ``target``, the name of the output about to be written, to clean only its
    temporaries. Logs each removal; returns the removed paths.
    """
    directory = Path(directory)
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if not entry.name.startswith(".") or not entry.name.startswith(f".{target or ''}"):
            continue
        reason = _stale_reason(entry.name, target)
        if reason is None:
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        logger.info("removed %s, a temporary left by an interrupted write (%s)", path, reason)
        removed.append(path)
    return removed


WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for the file system",
}
"""The errors of a write the file system refuses, and their cause in words."""


class WriteError(UserError):
    """An output the file system would not take (:data:`WRITE_ERRORS`): nothing of it was
    written, and what was there before is unchanged."""

    def __init__(self, path: str | os.PathLike, cause: str):
        super().__init__(f"cannot write {path}: {cause}")
        self.path, self.cause = Path(path), cause


def _filesystem_cause(folder: Path) -> str | None:
    """Why the file system of ``folder`` takes no more writes, as far as it tells: read-only,
    or no block left; None otherwise."""
    try:
        fs = os.statvfs(folder)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return WRITE_ERRORS[errno.EROFS]
    free = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail
    return WRITE_ERRORS[errno.ENOSPC] if free == 0 else None


def write_failure(
    exc: BaseException, path: Path, temporary: Path | None = None
) -> WriteError | None:
    """The :class:`WriteError` that ``exc``, raised while writing ``path`` (through
    ``temporary``), stands for, or None when it is no refused write.

    An OSError of :data:`WRITE_ERRORS` counts (a permission error only about a file in the
    output's folder, not one the writer was reading); so does an error that carries no errno
    (numpy's short writes, torch's "unexpected pos") when the file system is read-only or full.
    """
    if isinstance(exc, WriteError):
        return None
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRORS:
        if exc.filename is None or isinstance(exc.filename, int):
            return WriteError(path, WRITE_ERRORS[exc.errno])
        named = Path(os.path.abspath(os.fsdecode(exc.filename)))
        if temporary is not None and temporary.absolute() in named.parents:
            # A file of a temporary folder: named at its place in the output.
            return WriteError(
                path / named.relative_to(temporary.absolute()), WRITE_ERRORS[exc.errno]
            )
        if path.absolute() in named.parents:  # a file of the output folder
            return WriteError(named, WRITE_ERRORS[exc.errno])
        places = {path.absolute(), path.absolute().parent}
        if temporary is not None:
            places.add(temporary.absolute())
        if exc.errno in (errno.EACCES, errno.EPERM) and not places & {named, *named.parents}:
            return None  # a file the writer was reading, not writing
        return WriteError(path, WRITE_ERRORS[exc.errno])
    if isinstance(exc, RuntimeError) or (isinstance(exc, OSError) and exc.errno is None):
        folder = path.absolute().parent
        while not folder.exists():
            folder = folder.parent
        if cause := _filesystem_cause(folder):
            return WriteError(path, cause)
    return None


class RecordingWriter(io.RawIOBase):
    """A binary file that keeps the first OSError of its writes (``error``): for writers such
    as ``torch.save`` that turn it into an error without errno."""

    def __init__(self, file: Any):
        super().__init__()
        self.file = file
        self.error: OSError | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view, done = memoryview(data).cast("B"), 0
        try:
            while done < len(view):  # a raw file may take part of it: the rest, or its error
                done += self.file.write(view[done:]) or 0
        except OSError as exc:
            self.error = self.error or exc
            raise
        return done


@contextlib.contextmanager
def _refused_writes(path: Path, temporary: Path | None = None) -> Iterator[None]:
    """Turn a refused write of ``path`` in the block into a :class:`WriteError`."""
    try:
        yield
    except BaseException as exc:
        if (error := write_failure(exc, path, temporary)) is not None:
            raise error from None
        raise


def _temporary_file(path: Path, suffix: str | None) -> Path:
    with _refused_writes(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        fd, tmp = tempfile.mkstemp(
            prefix=_prefix(path), suffix=suffix or "".join(path.suffixes) + ".tmp", dir=path.parent
        )
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file lives in the same directory so ``os.replace`` is an atomic rename. On any
    exception the temporary file is removed and ``path`` is left as it was; temporaries of
    ``path`` that killed writers left are removed first. A write the file system refuses ends
    in a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    tmp_path = _temporary_file(path, suffix)
    try:
        with _refused_writes(path, tmp_path):
            yield tmp_path
            if not tmp_path.is_symlink() and tmp_path.stat().st_nlink == 1:
                # mkstemp creates 0600 files; give the output the permissions of a new file.
                os.chmod(tmp_path, 0o666 & ~_UMASK)
            os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike, check: Callable[[], object] | None = None
) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only if the block succeeds.

    Temporary directories of ``path`` that killed writers left are removed first. A write the
    file system refuses, of the folder or of a file in it, ends in a :class:`WriteError` that
    names it at its place in ``path``; the earlier ``path`` stays as it was. ``path`` must not
    be a symbolic link: give the folder it points to (:func:`segpipe.outputs.check_folder`).
    ``check``, called once the block is done and before ``path`` is replaced, may still refuse
    it (what was there may have changed while the block ran).
    """
    path = Path(path)
    if path.is_symlink():
        raise ValueError(f"{path}: a symbolic link; write to the folder it points to")
    with _refused_writes(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        with _refused_writes(path, tmp):
            yield tmp
            if check is not None:
                check()
            os.chmod(tmp, 0o777 & ~_UMASK)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_copy(
    source: str | os.PathLike, target: str | os.PathLike, *, link: bool = False
) -> Iterator[Path]:
    """Copy ``source`` to a temporary beside ``target`` (with ``link``, a hard link where the
    file systems allow: for files replaced only by rename, never written in place), yield it to
    check or record, then rename it onto ``target``: the one atomic copy of the package."""
    with atomic_path(target) as tmp:
        if link:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        yield tmp


def copy_file(source: str | os.PathLike, target: str | os.PathLike, *, link: bool = False) -> None:
    """:func:`atomic_copy` with nothing to do before the rename."""
    with atomic_copy(source, target, link=link):
        pass


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically; NaN becomes null so the file is valid JSON for DVC and browsers."""
    write_text(path, json.dumps(_nan_to_none(data), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON a pipeline file holds (UTF-8), as :func:`write_json` writes it."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file's bytes, read in chunks (hashlib.file_digest)."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV atomically (no index column)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


TEXT_COLUMNS = (
    "id",
    "image",
    "mask",
    "raw_mask",
    "group",
    "official_split",
    "classes",
    "file",
    "problem",
    "class_name",
    "true",
    "actual",
    "predicted",
)
"""Columns of the pipeline's tables that hold text (ids, paths, class names): read as written."""


def read_table(path: str | os.PathLike, text=TEXT_COLUMNS, **kwargs):
    """Read a CSV (or, with ``sep="\\t"``, a TSV) table written by this pipeline.

    Columns named in ``text`` (all columns with ``text=True``) are read as ``str`` exactly as
    written: an id such as ``NA``, ``nan``, ``None``, ``null``, ``#N/A``, ``-nan``, ``007`` or
    ``" "`` stays that string (pandas' defaults would turn most of these into NaN or a number).
    In the other columns only an empty cell is missing (NaN), which is how :func:`write_csv`
    writes NaN. Other keyword arguments go to :func:`pandas.read_csv`.
    """
    import pandas as pd

    sep = kwargs.get("sep", ",")
    columns = list(pd.read_csv(path, sep=sep, nrows=0).columns)
    texts = columns if text is True else [c for c in columns if c in set(text)]
    return pd.read_csv(
        path,
        dtype={c: str for c in texts},
        keep_default_na=False,
        na_values={c: [""] for c in columns if c not in texts},
        **kwargs,
    )


def check_writable(path: str | os.PathLike) -> None:
    """Before any work: raise :class:`WriteError` when the nearest existing folder of ``path``
    is on a read-only file system or cannot be written in, NotADirectoryError (naming it)
    when it is a file."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{parent} is a file, not a folder")
    cause = _filesystem_cause(parent)
    if cause == WRITE_ERRORS[errno.EROFS]:
        raise WriteError(path, cause)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WriteError(path, f"{WRITE_ERRORS[errno.EACCES]} in {parent}")
