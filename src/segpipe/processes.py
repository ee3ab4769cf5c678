"""Worker processes that die with their parent.

A job's pool workers (remap and preprocess), DataLoader workers and data-parallel training ranks
are children of the job's process. Killed with SIGKILL (``kill -9``, the OOM killer, a cancelled
Slurm job), that process cannot stop them: a ProcessPoolExecutor worker waits on its task pipe
for good (its own copy of the pipe keeps it open), and a rank keeps training. On Linux each
child asks the kernel to send it SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """In a child process of ``parent``: be killed (SIGKILL) when the parent dies. A child whose
    parent died before this call (it now has another) exits at once. Use as a pool's
    ``initializer`` (with ``initargs=(os.getpid(),)``) or a DataLoader's ``worker_init_fn``."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class DieWithParent:
    """A picklable ``worker_init_fn`` of a DataLoader (called with the worker's id) that makes
    the worker die with the process that made the loader (:func:`die_with_parent`)."""

    def __init__(self) -> None:
        self.parent = os.getpid()

    def __call__(self, worker_id: int) -> None:
        die_with_parent(self.parent)
