"""Stop signals: SIGTERM and SIGUSR1, which Slurm sends at a job's time limit or on preemption.

:class:`StopRequest` records them while training runs; the loop asks it after every step
(data-parallel ranks agree every ``STOP_CHECK_EVERY`` steps) and, told to stop, checkpoints
the epoch so far and raises :class:`TrainingInterrupted`, which ends the process with the
status of one ended by SIGTERM (``EXIT_INTERRUPTED``), as Slurm expects of a requeued job.
"""

from __future__ import annotations

import signal
from typing import Any

import torch
import torch.distributed as dist

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
STOP_CHECK_EVERY = 10  # steps between the ranks' agreement on a stop signal (DDP only)
EXIT_INTERRUPTED = 128 + signal.SIGTERM  # the exit status of a process ended by SIGTERM


class TrainingInterrupted(SystemExit):
    """Raised after a stop signal, once the resumable checkpoint is safely on disk."""

    def __init__(self):
        super().__init__(EXIT_INTERRUPTED)


class StopRequest:
    """Records SIGTERM/SIGUSR1 so the loop can checkpoint at the next step, then stop."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def agreed(self, device: torch.device, step: int) -> bool:
        """True on every rank as soon as any rank was signalled (all ranks stop at one step).

        A single process reads its own flag. Data-parallel ranks agree through an all-reduce,
        which makes the host wait for the device, so they do it only every
        ``STOP_CHECK_EVERY`` steps (a signal arrives minutes before the time limit).
        """
        if not dist.is_initialized():
            return self.signum is not None
        if step % STOP_CHECK_EVERY:
            return False
        flag = torch.tensor([1 if self.signum is not None else 0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())
