"""Logging set-up for rule scripts, and progress that suits both a terminal and a log file."""

from __future__ import annotations

import errno
import logging
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(
    log_file: str | None = None, level: int = logging.INFO, *, append: bool = False
) -> None:
    """Send log records to ``log_file`` (the rule's ``log:``) and to stderr.

    Called once by each script in ``scripts/``; the package itself only uses
    ``logging.getLogger(__name__)``.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.FileHandler(log_file, mode="a" if append else "w", encoding="utf-8")
        )
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught


def inherited_log_files() -> list[str]:
    """Files the root logger writes to, for child processes that must log to the same place."""
    return [
        h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)
    ]


class UserError(Exception):
    """An expected failure that the user fixes in the config or the data, not a bug.

    A rule script that ends with one logs its message as one line, without a traceback.
    """


# A write the disk refused that did not go through segpipe.io (a logger's own files): still
# one line, since no traceback helps with a full disk, a quota or a read-only file system.
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _log_uncaught(exc_type, exc, tb) -> None:
    """Put the error that ends a rule's script into its log file, where users look first.

    A :class:`UserError` or a full or read-only disk is one line; anything else comes with its
    traceback. The stderr handler
    prints the same record, so the default hook is not called again.
    """
    expected = issubclass(exc_type, UserError) or (
        issubclass(exc_type, OSError) and getattr(exc, "errno", None) in FULL_OR_READ_ONLY
    )
    logging.getLogger("segpipe").critical(
        "%s: %s", exc_type.__name__, exc, exc_info=None if expected else (exc_type, exc, tb)
    )


def progress(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    logger: logging.Logger | None = None,
    every_s: float = 10.0,
) -> Iterator[T]:
    """Iterate with a tqdm bar on an interactive terminal and plain log lines otherwise.

    The log gets a line at most every ``every_s`` seconds plus one at the end, so log files stay
    readable (no carriage-return bars) while long loops still show they are alive.
    """
    log = logger or logging.getLogger("segpipe")
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = tqdm(iterable, desc=desc, total=total, disable=not sys.stderr.isatty(), leave=False)
    last = start = time.monotonic()
    n = 0
    for n, item in enumerate(bar, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            log.info("%s: %d/%s (%.1f/s)", desc, n, total or "?", n / (now - start))
    log.info("%s: done, %d items in %.1f s", desc, n, time.monotonic() - start)
