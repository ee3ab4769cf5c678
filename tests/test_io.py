"""Atomic writes after a writer was killed with SIGKILL: its temporary does not stay forever.

Each stale temporary is made the way it happens in a run: a real process enters ``atomic_path``
or ``atomic_dir``, writes part of its output and is killed with ``kill -9`` mid-write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from segpipe.io import atomic_dir, atomic_path

WRITER = """
import sys, time
from pathlib import Path
from segpipe.io import atomic_dir, atomic_path

target, kind = Path(sys.argv[1]), sys.argv[2]
with (atomic_path if kind == "file" else atomic_dir)(target) as tmp:
    if kind == "file":
        tmp.write_bytes(b"half a checkpoint" * 1000)
    else:
        (tmp / "a.png").write_bytes(b"half a mask")
    print(tmp, flush=True)
    time.sleep(60)
"""


@contextlib.contextmanager
def writer(target: Path, kind: str = "file") -> Iterator[tuple[subprocess.Popen, Path]]:
    """A process in the middle of an atomic write of ``target``, and its temporary."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), kind], stdout=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().strip()
        assert line, f"the writer exited with {proc.wait()}"
        yield proc, Path(line)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def killed_writer(target: Path, kind: str = "file") -> Path:
    """The temporary of a writer of ``target`` killed with SIGKILL mid-write."""
    with writer(target, kind) as (proc, tmp):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert tmp.exists()
    return tmp


def wait_for_zombie(pid: int, timeout: float = 5.0) -> None:
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the killed writer did not become a zombie"
        time.sleep(0.01)


def test_the_next_write_removes_the_temporary_of_a_writer_killed_mid_write(tmp_path, caplog):
    """A checkpoint writer killed with kill -9 leaves ``.last.pt.<host>-<pid>.XXXX.pt.tmp``;
    the next write of last.pt removes it (logged, naming it) and completes."""
    target = tmp_path / "resume" / "last.pt"
    stale = killed_writer(target)
    assert stale.name.startswith(".last.pt.") and stale.name.endswith(".pt.tmp")
    with caplog.at_level(logging.INFO, logger="segpipe.io"), atomic_path(target) as tmp:
        tmp.write_bytes(b"complete checkpoint")
    assert not stale.exists()
    assert target.read_bytes() == b"complete checkpoint"
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]
    assert any(
        r.levelno == logging.INFO and stale.name in r.getMessage() for r in caplog.records
    ), caplog.text


def test_the_next_atomic_dir_removes_the_partial_folder_of_a_killed_writer(tmp_path):
    """A remap killed with kill -9 leaves a partial ``.masks.<host>-<pid>.XXXX.tmp`` folder."""
    target = tmp_path / "remap" / "masks"
    stale = killed_writer(target, "dir")
    assert (stale / "a.png").exists()
    with atomic_dir(target) as tmp:
        (tmp / "a.png").write_bytes(b"a whole mask")
    assert not stale.exists()
    assert (target / "a.png").read_bytes() == b"a whole mask"
    assert sorted(p.name for p in target.parent.iterdir()) == ["masks"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_writer_not_yet_reaped_counts_as_gone(tmp_path):
    """A zombie (killed, its parent has not waited for it yet) still has its pid: it is gone."""
    target = tmp_path / "last.pt"
    with writer(target) as (proc, stale):
        os.kill(proc.pid, signal.SIGKILL)
        wait_for_zombie(proc.pid)
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"complete")
    assert not stale.exists() and target.read_bytes() == b"complete"


def test_a_live_writers_temporary_is_kept(tmp_path):
    """A writer that still runs keeps its temporary, through a write of the same target and a
    cleanup of the whole folder; once it is killed, the cleanup removes it."""
    from segpipe.io import remove_stale_temporaries

    target = tmp_path / "last.pt"
    with writer(target) as (proc, live):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"mine")
        assert remove_stale_temporaries(tmp_path) == []
        assert live.exists() and target.read_bytes() == b"mine"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert remove_stale_temporaries(tmp_path) == [live]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_old_style_and_other_host_temporaries_are_stale_and_nothing_else(tmp_path):
    """Temporaries without a pid (written before it was in the name) and from another host are
    stale; other hidden files, outputs and another target's temporaries (given ``target``)
    stay."""
    from segpipe.io import remove_stale_temporaries

    old_file = tmp_path / ".last.pt.k2x_9abc.pt.tmp"
    old_dir = tmp_path / ".masks.ab12cd34.tmp"
    other_host = tmp_path / ".best.pt.gpu-node-07-4242.zz99yy88.pt.tmp"
    old_npy = tmp_path / ".train.npy.q1w2e3r4.npy"  # old preprocess temporary: no .tmp ending
    keep = [tmp_path / ".gitignore", tmp_path / "last.pt", tmp_path / ".snakemake_timestamp"]
    for path in [old_file, other_host, old_npy, *keep]:
        path.write_bytes(b"x")
    old_dir.mkdir()
    (old_dir / "a.png").write_bytes(b"x")

    assert remove_stale_temporaries(tmp_path, "best.pt") == [other_host]
    assert set(remove_stale_temporaries(tmp_path)) == {old_file, old_dir}
    assert old_npy.exists()  # without a target, only names ending in .tmp count as old-style
    assert remove_stale_temporaries(tmp_path, "train.npy") == [old_npy]
    assert sorted(tmp_path.iterdir()) == sorted(keep)
    assert remove_stale_temporaries(tmp_path / "missing") == []


# --- writes the file system refuses ---------------------------------------------------------


def test_a_full_disk_names_the_output_and_keeps_the_previous_file_and_folder(tmp_path):
    from segpipe.io import WriteError, write_text

    from helpers.filesystems import tmpfs

    with tmpfs(tmp_path / "disk", "64k") as disk:
        write_text(disk / "summary.json", "good\n")
        with pytest.raises(WriteError) as caught:
            write_text(disk / "summary.json", "x" * 200_000)
        assert (
            str(caught.value)
            == f"cannot write {disk / 'summary.json'}: no space left on the device"
        )
        assert (disk / "summary.json").read_text() == "good\n"
        with atomic_dir(disk / "out") as tmp:
            (tmp / "a.png").write_bytes(b"old")
        with pytest.raises(WriteError) as caught, atomic_dir(disk / "out") as tmp:
            (tmp / "masks").mkdir()
            (tmp / "masks" / "b.png").write_bytes(b"x" * 200_000)
        # Named at its place in the output, not in the temporary folder that is gone.
        assert str(caught.value).startswith(f"cannot write {disk / 'out'}")
        assert sorted(p.name for p in disk.iterdir()) == ["out", "summary.json"]
        assert (disk / "out" / "a.png").read_bytes() == b"old"


def test_a_read_only_file_system_is_named_as_such(tmp_path):
    from segpipe.io import WriteError, write_text

    from helpers.filesystems import remount_read_only, tmpfs

    with tmpfs(tmp_path / "disk") as disk:
        write_text(disk / "a.txt", "good\n")
        remount_read_only(disk)
        for target in (disk / "a.txt", disk / "new" / "b.txt"):
            with pytest.raises(WriteError, match=f"cannot write {target}: read-only file system"):
                write_text(target, "new\n")
        with pytest.raises(WriteError, match="read-only file system"), atomic_dir(disk / "out"):
            pass
        assert (disk / "a.txt").read_text() == "good\n"


def test_a_permission_error_of_a_file_being_read_is_not_a_write_error(tmp_path):
    """Only refusals of the output and its temporary are write errors; the rest pass as they
    are, so that a bug or an unreadable input is not reported as a full disk."""
    import errno

    from segpipe.io import WriteError

    unreadable = OSError(errno.EACCES, "Permission denied", str(tmp_path / "inputs" / "a.png"))
    with pytest.raises(PermissionError), atomic_path(tmp_path / "out" / "x.txt"):
        raise unreadable
    with (
        pytest.raises(WriteError, match="permission denied"),
        atomic_path(tmp_path / "x.txt") as tmp,
    ):
        raise OSError(errno.EACCES, "Permission denied", str(tmp))
    with pytest.raises(ValueError, match="not a write"), atomic_path(tmp_path / "x.txt"):
        raise ValueError("not a write")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_file_that_only_looks_like_an_old_temporary_is_kept(tmp_path):
    from segpipe.io import remove_stale_temporaries

    mine = [
        tmp_path / ".best.pt.backup12",
        tmp_path / ".best.pt.20240101",
        tmp_path / ".a.png.original",
    ]
    for path in mine:
        path.write_bytes(b"the user's")
    assert remove_stale_temporaries(tmp_path, "best.pt") == []
    assert remove_stale_temporaries(tmp_path, "a.png") == []
    assert remove_stale_temporaries(tmp_path) == []
    assert all(path.read_bytes() == b"the user's" for path in mine)


# --- the one home of reading JSON, hashing a file and copying atomically ---------------------


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 3, 3 << 20])
def test_file_sha256_is_the_digest_of_the_files_bytes(tmp_path: Path, size: int) -> None:
    import hashlib

    from segpipe.io import file_sha256

    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)


def test_read_json_reads_what_write_json_wrote(tmp_path: Path) -> None:
    from segpipe.io import read_json, write_json

    data = {"classes": ["chat", "hund", "fond é"], "score": None, "n": [1, 2.5]}
    write_json(tmp_path / "m.json", {**data, "score": float("nan")})
    assert read_json(tmp_path / "m.json") == data
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValueError):
        read_json(tmp_path / "broken.json")


@pytest.mark.parametrize("link", [False, True])
def test_atomic_copy_replaces_the_target_whole(tmp_path: Path, link: bool) -> None:
    from segpipe.io import atomic_copy, copy_file

    source, target = tmp_path / "a.pt", tmp_path / "out" / "b.pt"
    target.parent.mkdir()
    source.write_bytes(b"new" * 1000)
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_copy(source, target, link=link) as tmp:
        assert tmp.read_bytes() == source.read_bytes() and tmp.parent == target.parent
        raise RuntimeError("a check before the rename fails")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.pt"]  # no temporary left
    copy_file(source, target, link=link)
    assert target.read_bytes() == source.read_bytes()
    assert (target.stat().st_ino == source.stat().st_ino) == link  # a hard link on one disk
