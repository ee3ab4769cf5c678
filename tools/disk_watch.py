"""How much a test run writes to the temporary folder: its peak during the run and what it leaves.

.ci/run starts it before the tests and stops it (SIGTERM) after them:

    python3 tools/disk_watch.py --out disk.json &   # samples the folder every few seconds
    ...                                             # the tests
    kill -TERM $!; wait $!                          # prints the summary, writes disk.json

The size is what the files under the folder take on disk (``du``), the checkout left out when it
lies inside. "Left behind" is what grew between the start and the end, entry by entry: the
folder's own entries, and each numbered run folder of pytest (``pytest-of-<user>/pytest-<n>``).
Standard library only: it runs before the venv exists.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

GB = 1024**3
MB = 1024**2
LEFT_BEHIND_LIMIT = GB
"""What a green run may leave in the temporary folder (``--check``)."""


def tree_bytes(path: Path, skip: Path | None = None) -> int:
    """Bytes on disk of ``path`` and everything under it (links not followed; ``skip`` left out;
    files that vanish while it walks count as gone)."""
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        if skip is not None and current == skip:
            continue
        try:
            info = current.lstat()
        except OSError:
            continue
        total += info.st_blocks * 512
        if not os.path.isdir(current) or os.path.islink(current):
            continue
        try:
            with os.scandir(current) as entries:
                stack.extend(Path(entry.path) for entry in entries)
        except OSError:
            continue
    return total


def entries(folder: Path) -> list[Path]:
    """The folder's entries, with pytest's per-user folders opened one level (each run is one
    entry: ``pytest-of-<user>/pytest-<n>``)."""
    found = []
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return found
    for child in children:
        if child.name.startswith("pytest-of-") and child.is_dir() and not child.is_symlink():
            found.extend(sorted(child.iterdir()))
        else:
            found.append(child)
    return found


def sizes(folder: Path, skip: Path | None) -> dict[str, int]:
    return {str(path): tree_bytes(path, skip) for path in entries(folder)}


def left_behind(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Entry -> bytes it grew by, for the entries that are new or larger at the end."""
    grown = {path: size - before.get(path, 0) for path, size in after.items()}
    return {path: size for path, size in grown.items() if size > 0}


def human(size: int) -> str:
    return f"{size / GB:.2f} GB" if size >= GB else f"{size / MB:.1f} MB"


def summary(record: dict) -> str:
    return (
        f"temporary folder {record['folder']}: peak {human(record['peak_above_start_bytes'])} "
        f"above the start during the run, {human(record['left_behind_bytes'])} left behind"
    )


class Stop(Exception):
    """SIGTERM or SIGINT: the run is over."""


def _stop(signum, frame) -> None:
    for each in (signal.SIGTERM, signal.SIGINT):
        signal.signal(each, signal.SIG_IGN)  # a second signal does not cut the summary short
    raise Stop


def watch(folder: Path, skip: Path | None, interval: float, samples: int | None = None) -> dict:
    """Sample ``folder`` every ``interval`` seconds until SIGTERM or SIGINT (or ``samples``
    samples); the record."""
    start_sizes = sizes(folder, skip)
    start = sum(start_sizes.values())
    print(
        f"disk_watch: watching {folder} ({human(start)} at the start)", file=sys.stderr, flush=True
    )
    peak, taken = start, 1
    try:
        while samples is None or taken < samples:
            time.sleep(interval)
            peak = max(peak, tree_bytes(folder, skip))
            taken += 1
    except Stop:
        pass
    end_sizes = sizes(folder, skip)
    end = sum(end_sizes.values())
    grown = left_behind(start_sizes, end_sizes)
    largest = sorted(grown.items(), key=lambda item: -item[1])[:10]
    return {
        "folder": str(folder),
        "interval_s": interval,
        "samples": taken + 1,
        "start_bytes": start,
        "peak_bytes": max(peak, end),
        "end_bytes": end,
        "peak_above_start_bytes": max(peak, end) - start,
        "left_behind_bytes": sum(grown.values()),
        "left_behind": [{"path": path, "bytes": size} for path, size in largest],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON record to write")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--skip", type=Path, default=Path.cwd(), help="left out (the checkout)")
    parser.add_argument("--samples", type=int, help="stop after this many samples")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 when the run left more than {human(LEFT_BEHIND_LIMIT)} behind",
    )
    args = parser.parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    record = watch(args.folder.resolve(), args.skip.resolve(), args.interval, args.samples)
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"disk_watch: {summary(record)}", file=sys.stderr)
    for entry in record["left_behind"]:
        print(f"disk_watch:   {human(entry['bytes']):>9}  {entry['path']}", file=sys.stderr)
    if args.check and record["left_behind_bytes"] > LEFT_BEHIND_LIMIT:
        print(
            f"disk_watch: more than {human(LEFT_BEHIND_LIMIT)} left behind: a test writes outside "
            "its temporary folder, or pytest keeps the folders of passed tests",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
