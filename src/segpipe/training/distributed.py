"""Training processes: one per GPU under DistributedDataParallel with ``train.gpus > 1``
(:func:`train_data_parallel`: nccl on CUDA, gloo on the CPU), else the one process; each with
its device, threads, loader workers and autocast (:class:`Process`, :func:`setup_process`)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from segpipe.data.arrays import EpochSampler
from segpipe.logs import inherited_log_files, setup_logging
from segpipe.models.device import amp_dtype, resolve_device
from segpipe.training.stop_signals import EXIT_INTERRUPTED, StopRequest, TrainingInterrupted
from segpipe.training.train_job import Job

logger = logging.getLogger(__name__)


@dataclass
class Process:
    """One training process: its rank of ``world_size``, its device and how it computes."""

    rank: int
    world_size: int
    device: torch.device
    threads: int
    workers: int  # loader worker processes
    amp: torch.dtype | None  # the autocast dtype; None: full precision
    channels_last: bool

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints and history."""
        return self.rank == 0


def setup_process(
    rank: int, world_size: int, port: int | None, job: Job, log_files: list[str] | None
) -> Process:
    """This process's device, threads, loader workers and autocast; a data-parallel rank also
    joins the process group (rank 0 logging to the parent's log file)."""
    cfg = job.cfg
    device = resolve_device(cfg.device, rank if world_size > 1 else 0)
    if world_size > 1:
        if rank == 0 and log_files:
            setup_logging(log_files[0], append=True)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
        )
        if device.type == "cuda":
            torch.cuda.set_device(device)
    threads = max(1, job.threads // world_size)
    torch.set_num_threads(threads)
    proc = Process(
        rank=rank,
        world_size=world_size,
        device=device,
        threads=threads,
        workers=cfg.num_workers
        if cfg.num_workers is not None
        else default_workers(device, threads),
        amp=amp_dtype(cfg.amp, device),
        channels_last=cfg.channels_last if cfg.channels_last is not None else device.type == "cuda",
    )
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if proc.is_main:
        logger.info(
            "training %s-%s on %s x%d, %d threads and %d loader workers per process, amp %s, channels_last %s, compile %s",
            cfg.arch,
            cfg.encoder,
            device.type,
            world_size,
            threads,
            proc.workers,
            proc.amp,
            proc.channels_last,
            cfg.compile,
        )
    return proc


def default_workers(device: torch.device, threads: int) -> int:
    """Loader workers when the config leaves them to segpipe.

    A batch read from the page-cached memory map costs tens of microseconds, while handing a
    batch from a worker process to the trainer costs about a millisecond (shared memory, pickling;
    ``tools/bench/bench_train.py`` measures both), so on the CPU the trainer reads its own batches.
    On CUDA the workers read and pin large batches while the main process keeps the GPU busy.
    """
    return 0 if device.type == "cpu" else min(8, max(0, threads - 1))


def train_data_parallel(loop: Callable[..., None], job: Job) -> None:
    """Run the training ``loop`` (:func:`segpipe.training.train._train`) in ``train.gpus``
    processes under DistributedDataParallel, each given its rank, the number of ranks, the
    port of the process group, ``job``, the log files and this process's id."""
    port = _free_port()
    logger.info("starting %d data-parallel processes (DistributedDataParallel)", job.cfg.gpus)
    with StopRequest():  # the ranks handle the signal; the parent waits for their checkpoint
        try:
            torch.multiprocessing.start_processes(
                loop,
                args=(job.cfg.gpus, port, job, inherited_log_files(), os.getpid()),
                nprocs=job.cfg.gpus,
                join=True,
                # fork, not spawn: spawn re-runs the unguarded __main__ of a Snakemake
                # script. The parent has not initialised CUDA, so forking is safe.
                start_method="fork",
            )
        except torch.multiprocessing.ProcessExitedException as exc:
            if exc.exit_code == EXIT_INTERRUPTED:
                raise TrainingInterrupted() from None
            raise


def leave_process_group(proc: Process, sampler: EpochSampler) -> list[Any] | None:
    """Which train samples each rank used in the last epoch (disjoint by construction),
    gathered before the process group ends; None for a single process."""
    if not proc.distributed:
        return None
    samples: list[Any] = [None] * proc.world_size
    dist.all_gather_object(samples, sampler.indices())
    dist.barrier()
    dist.destroy_process_group()
    return samples


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
