"""Logging of rule scripts: the log file and stderr, one line for a UserError and a traceback
for a bug, and progress lines that stay readable in a log file."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap

import pytest

from segpipe.logs import inherited_log_files, progress, setup_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    handlers, level, hook = root.handlers[:], root.level, sys.excepthook
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:], sys.excepthook = handlers, hook
    root.setLevel(level)


def test_setup_logging_writes_the_log_file_and_names_it_for_children(tmp_path) -> None:
    log = tmp_path / "logs" / "remap" / "x.log"
    setup_logging(str(log))
    logging.getLogger("segpipe.x").info("hello %s", "there")
    assert inherited_log_files() == [str(log)]
    assert log.read_text().rstrip().endswith("INFO segpipe.x: hello there")
    setup_logging(str(log), append=True)
    logging.getLogger("segpipe.x").info("again")
    assert "hello there" in log.read_text() and "again" in log.read_text()
    setup_logging(str(log))  # a rerun of the job starts its log afresh
    assert log.read_text() == ""


SCRIPT = """
from segpipe.logs import UserError, setup_logging
setup_logging({log!r})
raise {error}("{message}")
"""


@pytest.mark.parametrize(
    "error, name, traceback",
    [
        ("UserError", "UserError", False),
        ("KeyError", "KeyError", True),
        ("lambda m: OSError(28, 'No space left on device', m)", "OSError", False),
        ("lambda m: OSError(30, 'Read-only file system', m)", "OSError", False),
        ("lambda m: OSError(2, 'No such file or directory', m)", "FileNotFoundError", True),
    ],
    ids=["user_error", "bug", "full_disk", "read_only", "other_os_error"],
)
def test_an_uncaught_error_ends_in_the_log(tmp_path, error, name, traceback) -> None:
    """A UserError, or a write a full or read-only disk refused outside segpipe.io (a
    logger's own files), is one line; anything else keeps its traceback."""
    log = tmp_path / "job.log"
    script = SCRIPT.format(log=str(log), error=f"({error})", message="dataset.root: no such folder")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True)
    assert proc.returncode == 1
    text = log.read_text()
    assert f"CRITICAL segpipe: {name}: " in text and "no such folder" in text
    assert ("Traceback" in text) is traceback
    assert ("Traceback" in proc.stderr.decode()) is traceback


def test_progress_logs_lines_not_bars(caplog) -> None:
    logger = logging.getLogger("segpipe.test")
    with caplog.at_level(logging.INFO, logger="segpipe.test"):
        assert list(progress(range(5), desc="images", logger=logger, every_s=0.0)) == [
            0,
            1,
            2,
            3,
            4,
        ]
    lines = [r.getMessage() for r in caplog.records]
    for n, line in enumerate(lines[:5], start=1):
        assert re.fullmatch(rf"images: {n}/5 \([0-9.]+/s\)", line), line
    assert lines[-1].startswith("images: done, 5 items in ")
    assert not any("\r" in line for line in lines)


def test_progress_of_an_iterator_without_a_length(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="segpipe"):
        assert sum(progress(iter([1, 2]), desc="tiles", every_s=3600)) == 3
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["tiles: done, 2 items"]
