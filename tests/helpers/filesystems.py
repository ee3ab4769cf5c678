"""File systems that refuse writes, for the tests of write errors: a small tmpfs that fills up,
one remounted read-only (the tests may run as root, whom ``chmod`` does not stop), and files
whose writes fail after some bytes, for what a mount cannot reach or where mounting is not
allowed (the tmpfs tests skip there, saying why)."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``folder`` (made), unmounted at the end; skips the test
    where this process may not mount one."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({(proc.stderr or 'mount failed').strip()}): the "
            "real full and read-only file systems need root or CAP_SYS_ADMIN"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def remount_read_only(folder: Path) -> None:
    """Make the tmpfs at ``folder`` read-only (EROFS for every write, root's too)."""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


def fill(folder: Path) -> None:
    """Take every free byte of the file system of ``folder``."""
    with open(folder / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while f.write(b"\0" * 4096):
            pass


class FailingFile(io.RawIOBase):
    """A file opened for writing whose writes fail with ``code`` once ``after`` bytes are in."""

    def __init__(self, raw: Any, code: int, after: int):
        super().__init__()
        self.raw, self.code, self.after, self.written = raw, code, after, 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self.written + size > self.after:
            raise OSError(self.code, os.strerror(self.code))
        self.written += self.raw.write(data)
        return size

    def close(self) -> None:
        self.raw.close()
        super().close()


def failing_open(code: int, after: int = 4096) -> Callable[..., Any]:
    """An ``open`` to patch into a module: files opened for writing fail with ``code`` after
    ``after`` bytes, as on a disk that fills up midway; others open as usual."""

    def opener(file: Any, mode: str = "r", buffering: int = -1, **kwargs: Any) -> Any:
        if not any(m in mode for m in "wax+"):
            return builtins.open(file, mode, buffering, **kwargs)
        return FailingFile(builtins.open(file, mode, buffering=0), code, after)

    return opener


def digests(folder: Path) -> dict[str, str]:
    """Every entry below ``folder`` that is not a folder (links not followed) -> the sha256 of
    its content, or where a link points."""
    found = {}
    for parent, dirs, names in os.walk(folder):
        for name in [*names, *(d for d in dirs if Path(parent, d).is_symlink())]:
            path = Path(parent, name)
            if path.is_symlink():
                found[str(path)] = "-> " + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[str(path)] = "not a regular file"
    return found
