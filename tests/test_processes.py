"""Worker processes die with their parent: remap and preprocess pools and DataLoader workers,
each started by a real parent process that is then killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from segpipe.processes import DieWithParent

# Each parent starts two workers that write their pid into PIDS and then wait for good.
PARENTS = {
    "remap pool": """
        import pandas as pd
        from segpipe.data import remap

        remap._remap_one = work
        # 40 rows: two chunks of 16 rows or more, one for each worker.
        remap.check_pairs(pd.DataFrame({"id": [str(i) for i in range(40)]}), None, threads=2)
    """,
    "preprocess pool": """
        import pandas as pd
        from segpipe.data import preprocess

        preprocess._decode = work
        preprocess.read_manifest = lambda path: pd.DataFrame(
            {"image": ["a", "b", "c", "d"], "mask": ["a", "b", "c", "d"]}
        )
        preprocess.preprocess_split("m.csv", PIDS / "out.npy", image_size=32, threads=2)
    """,
    "DataLoader workers": """
        import torch
        from segpipe.data import arrays

        class Waiting(torch.utils.data.Dataset):
            def __len__(self):
                return 8

            def __getitem__(self, i):
                return work(i)

        loader = arrays.batch_loader(Waiting(), batch_size=1, workers=2)
        loader.collate_fn = lambda batch: batch
        next(iter(loader))
    """,
}
PRELUDE = """
    import os, sys, time
    from pathlib import Path

    PIDS = Path(sys.argv[1])

    def work(*args):
        (PIDS / str(os.getpid())).write_text("")
        time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def start_parent(tmp_path: Path, body: str) -> tuple[subprocess.Popen, list[int]]:
    """A parent process running ``body``, and the pids of its two workers once both started."""
    script = textwrap.dedent(PRELUDE) + textwrap.dedent(body)
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, "-c", script, str(pids)], cwd=tmp_path)
    workers = lambda: [int(p.name) for p in pids.iterdir() if p.name.isdigit()]  # noqa: E731
    started = wait_for(lambda: len(workers()) >= 2 or parent.poll() is not None)
    assert started and parent.poll() is None, "the parent ended before its workers started"
    return parent, workers()


@pytest.mark.parametrize("kind", list(PARENTS))
def test_workers_die_when_their_parent_is_killed_with_sigkill(tmp_path: Path, kind: str) -> None:
    parent, workers = start_parent(tmp_path, PARENTS[kind])
    try:
        assert all(alive(pid) for pid in workers)
        assert {p.pid for p in psutil.Process(parent.pid).children()} >= set(workers)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert wait_for(lambda: not any(alive(pid) for pid in workers), 10), (
            f"{kind}: workers {[p for p in workers if alive(p)]} outlived their parent"
        )
    finally:
        parent.kill()
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_exits_at_once() -> None:
    script = "from segpipe.processes import die_with_parent as d; d({}); print('ran on')"
    gone = subprocess.run([sys.executable, "-c", script.format(-1)], capture_output=True, text=True)
    assert gone.returncode == 1 and "ran on" not in gone.stdout
    mine = subprocess.run(
        [sys.executable, "-c", script.format(os.getpid())], capture_output=True, text=True
    )
    assert mine.returncode == 0 and "ran on" in mine.stdout


def test_the_loader_hook_remembers_the_process_that_made_it() -> None:
    assert DieWithParent().parent == os.getpid()
