"""One training per resume folder: the lock a training holds on its resume state, released when
its process ends however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from segpipe.training.lock import LOCK_NAME, ResumeStateLockedError, hold_resume_state
from segpipe.training.train import train_model

from helpers.arrays import CLASSES, OPTIONS, make_array

HOLDER = (
    "import sys, time\n"
    "from segpipe.training.lock import hold_resume_state\n"
    "with hold_resume_state(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)


def start_holder(resume: Path) -> subprocess.Popen:
    """Another process that holds ``resume``'s lock until it is killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(resume)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_resume_folder_is_refused_naming_it_and_the_holder(tmp_path: Path) -> None:
    resume = tmp_path / "results" / "runs" / "a" / "train" / "resume"
    holder = start_holder(resume)
    try:
        with pytest.raises(ResumeStateLockedError) as exc, hold_resume_state(resume):
            pass
        message = str(exc.value)
        assert "\n" not in message
        assert f"resume folder '{resume}' is in use by another training" in message
        assert f"process {holder.pid} on host" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel released the lock of the killed holder: nothing stale to clean up.
    with hold_resume_state(resume):
        assert (resume / LOCK_NAME).read_text().startswith(f"process {os.getpid()} on host")


def test_the_lock_is_re_entrant_in_one_process_and_released_after(tmp_path: Path) -> None:
    with hold_resume_state(tmp_path / "r"), hold_resume_state(tmp_path / "r"):
        pass
    probe = "from segpipe.training.lock import hold_resume_state as h\nwith h({!r}): print('ok')"
    proc = subprocess.run(
        [sys.executable, "-c", probe.format(str(tmp_path / "r"))], capture_output=True, text=True
    )
    assert proc.stdout.strip() == "ok", proc.stderr


def test_a_training_refuses_a_resume_folder_another_training_writes(tmp_path: Path) -> None:
    """kill -9 of Snakemake leaves its trainer running; the rerun's training of the same model
    stops at once instead of writing the same checkpoints."""
    train = make_array(tmp_path / "train.npy", 8, 0)
    val = make_array(tmp_path / "val.npy", 4, 1)
    resume = tmp_path / "resume"
    holder = start_holder(resume)
    try:
        with pytest.raises(ResumeStateLockedError, match=f"process {holder.pid} on host"):
            train_model(
                train,
                val,
                best_path=tmp_path / "best.pt",
                last_path=tmp_path / "last.pt",
                history_path=tmp_path / "history.csv",
                resume_dir=resume,
                classes=CLASSES,
                **{**OPTIONS, "epochs": 1},
            )
        assert sorted(p.name for p in resume.iterdir()) == [LOCK_NAME]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_data_parallel_ranks_die_when_their_parent_is_killed_with_sigkill(tmp_path: Path) -> None:
    """torch's start_processes already asks for SIGINT at the parent's death; each rank makes
    it SIGKILL (segpipe.processes.die_with_parent): either way no rank trains on alone."""
    import psutil

    train = make_array(tmp_path / "train.npy", 8, 0)
    val = make_array(tmp_path / "val.npy", 4, 1)
    options = {**OPTIONS, "epochs": 200, "gpus": 2}
    script = (
        "import segpipe.training.train as t\n"
        f"t.train_model({str(train)!r}, {str(val)!r}, classes={CLASSES!r}, threads=2, "
        f"best_path={str(tmp_path / 'best.pt')!r}, last_path={str(tmp_path / 'last.pt')!r}, "
        f"history_path={str(tmp_path / 'h.csv')!r}, resume_dir={str(tmp_path / 'resume')!r}, "
        f"**{options!r})\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    ranks: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(ranks) < 2 and parent.poll() is None:
            ranks = [p.pid for p in psutil.Process(parent.pid).children()]
            time.sleep(0.2)
        assert len(ranks) == 2, "the data-parallel ranks did not start"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in ranks):
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in ranks), "ranks outlived their parent"
    finally:
        parent.kill()
        for pid in ranks:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_file_system_without_locks_trains_unguarded_with_a_warning(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with hold_resume_state(tmp_path / "r"):
        pass
    assert "cannot lock resume folder" in caplog.text and "No locks available" in caplog.text
