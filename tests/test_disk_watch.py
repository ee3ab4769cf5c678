"""tools/disk_watch.py: the temporary folder's peak during a run and what the run leaves there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers.repo import REPO
from tools import disk_watch


def write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def test_tree_bytes_counts_blocks_leaves_out_the_skipped_folder_and_follows_no_link(tmp_path):
    write(tmp_path / "a" / "f", 100_000)
    write(tmp_path / "clone" / "big", 1_000_000)
    (tmp_path / "link").symlink_to(tmp_path / "clone")
    counted = disk_watch.tree_bytes(tmp_path, skip=tmp_path / "clone")
    assert 100_000 <= counted < 200_000
    assert disk_watch.tree_bytes(tmp_path) > 1_100_000
    assert disk_watch.tree_bytes(tmp_path / "missing") == 0


def test_each_pytest_run_folder_is_an_entry(tmp_path):
    write(tmp_path / "pytest-of-me" / "pytest-3" / "f", 10)
    write(tmp_path / "pytest-of-me" / "pytest-4" / "f", 10)
    write(tmp_path / "other" / "f", 10)
    names = [p.relative_to(tmp_path).as_posix() for p in disk_watch.entries(tmp_path)]
    assert names == ["other", "pytest-of-me/pytest-3", "pytest-of-me/pytest-4"]


def test_left_behind_is_what_is_new_or_grew():
    before = {"a": 10, "b": 50, "gone": 7}
    after = {"a": 10, "b": 80, "new": 5}
    assert disk_watch.left_behind(before, after) == {"b": 30, "new": 5}


def test_sigterm_ends_the_watch_with_its_record_and_the_check(tmp_path):
    folder, out = tmp_path / "tmp", tmp_path / "disk.json"
    write(folder / "old" / "f", 4096)
    cmd = [sys.executable, str(REPO / "tools" / "disk_watch.py"), "--out", str(out)]
    cmd += ["--folder", str(folder), "--interval", "0.1", "--check"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    assert "disk_watch: watching" in proc.stderr.readline()  # its sizes at the start are taken
    write(folder / "pytest-of-me" / "pytest-1" / "big", 3 * 1024**2)
    time.sleep(1.0)
    (folder / "pytest-of-me" / "pytest-1" / "big").unlink()
    write(folder / "kept" / "f", 2 * 1024**2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    record = json.loads(out.read_text())
    assert record["peak_above_start_bytes"] >= 3 * 1024**2
    assert 2 * 1024**2 <= record["left_behind_bytes"] < 3 * 1024**2
    assert record["left_behind"][0]["path"] == str(folder / "kept")  # then the emptied folder
    assert "left behind" in err and str(folder / "kept") in err


def test_check_fails_a_run_that_leaves_more_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(disk_watch, "LEFT_BEHIND_LIMIT", 1000)
    folder, out = tmp_path / "tmp", tmp_path / "disk.json"
    folder.mkdir()
    real_sleep = time.sleep

    def sleep_then_write(seconds):  # the "run" writes while the watch sleeps
        write(folder / "kept", 10_000)
        real_sleep(0)

    monkeypatch.setattr(disk_watch.time, "sleep", sleep_then_write)
    args = ["--out", str(out), "--folder", str(folder), "--samples", "2", "--check"]
    assert disk_watch.main(args) == 1
    assert disk_watch.main([*args[:-1]]) == 0
