"""One writer per training state: a lock on a resume folder while a training writes it.

A training's resume folder (``results/runs/<model>/train/resume/``, a search rung's own) is not
a rule output, so nothing stops two processes from training into it: a trainer left running by
a killed Snakemake, and the rerun that resumes from the same folder. While a training runs, its
process holds an exclusive ``flock`` on ``<resume folder>/train.lock``, which the kernel
releases when the process ends, however it ends (a lock never outlives its holder, so there is
nothing stale to clean up). A second training of the same folder stops at once with one line
naming the folder and the holder (written into the file: pid and host).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from segpipe.logs import UserError

logger = logging.getLogger(__name__)
LOCK_NAME = "train.lock"
# Resume folders this process holds (a rung holds its folder while seeding it, then trains):
# folder -> how many holds are open.
_HELD: dict[Path, int] = {}


class ResumeStateLockedError(UserError, RuntimeError):
    """Another live process is training into the same resume folder."""


@contextlib.contextmanager
def hold_resume_state(resume_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``resume_dir``'s lock for the block (created with the folder if missing); raise
    :class:`ResumeStateLockedError` when another process holds it. Re-entrant in one process.
    Child processes forked meanwhile (data-parallel ranks) share the hold."""
    folder = Path(os.path.abspath(resume_dir))
    if folder in _HELD:
        _HELD[folder] += 1
        try:
            yield
        finally:
            _HELD[folder] -= 1
        return
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, resume_dir)
        _HELD[folder] = 1
        try:
            yield
        finally:
            del _HELD[folder]
    finally:
        os.close(fd)  # releases the lock (unless a forked child still holds the file open)


def _lock(fd: int, resume_dir: str | os.PathLike) -> None:
    """Take the lock of the open lock file ``fd`` and write this process into it, or raise."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _refuse(fd, resume_dir)
    except OSError as exc:  # a file system without locks (some network ones): train unguarded
        logger.warning(
            "cannot lock resume folder '%s' (%s): a second training of it would not be stopped",
            resume_dir,
            exc.strerror or exc,
        )
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)


def _refuse(fd: int, resume_dir: str | os.PathLike) -> NoReturn:
    """Raise for the lock file ``fd`` that another process holds, naming it from the file."""
    holder = os.pread(fd, 256, 0).decode("utf-8", "replace").strip() or "another process"
    raise ResumeStateLockedError(
        f"resume folder '{resume_dir}' is in use by another training ({holder}): two "
        "trainings would write the same checkpoints; wait for it to end or stop it, then run "
        "again"
    )
