"""The test tiers as CI runs them, from a fresh clone: `.ci/run` (building `.venv` included) and then
`make check`, timed, with the temporary folder's peak and what the run leaves there.

The clone is made from a commit of this repository (``--rev``, default HEAD) in a new folder, so
nothing of this checkout (its `.venv`, caches, results) helps. `.ci/run` records the temporary
folder through tools/disk_watch.py (SEGPIPE_DISK_RECORD); this script keeps that record.
docs/performance.md quotes the JSON through tools/performance_figures.py.

    python3 tools/bench/bench_ci.py --out tools/bench/results/ci-cpu-2cores.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from record import machine, write_result

REPO = Path(__file__).resolve().parents[2]
# Goals of the tiers on this machine (docs/performance.md).
GOALS = {"ci_s": 12 * 60, "check_s": 2 * 60, "left_behind_gb": 1, "peak_gb": 10}
INSTALLING_CHROMIUM = ".ci/run: installing chromium"
SUMMARY = re.compile(r"^=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s", re.M)


def clone(rev: str, parent: Path) -> tuple[Path, str]:
    """A fresh clone of this repository at ``rev``; its folder and full commit hash."""
    commit = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = parent / "segpipe"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(REPO), str(dest)], check=True)
    subprocess.run(["git", "checkout", "--quiet", commit], cwd=dest, check=True)
    return dest, commit


def pytest_counts(output: str) -> dict:
    """Passed/failed/skipped/... and seconds from pytest's last summary line."""
    found = list(SUMMARY.finditer(output))
    if not found:
        return {}
    last = found[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last["counts"])}
    return {**counts, "pytest_s": float(last["seconds"])}


def timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> dict:
    """Run ``cmd``, its output into ``log``; wall seconds, exit code and pytest's counts."""
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    return {"wall_s": round(wall, 1), "rc": proc.returncode, **pytest_counts(log.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "tools/bench/results/ci-cpu-2cores.json")
    parser.add_argument("--rev", default="HEAD", help="the commit to clone")
    parser.add_argument("--keep", action="store_true", help="keep the clone and its logs")
    args = parser.parse_args()

    parent = Path(tempfile.mkdtemp(prefix="bench-ci-"))
    work, commit = clone(args.rev, parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    # The clone is not beside ../shared/data as a checkout is: point the tests at it.
    env.setdefault("SEGPIPE_SHARED_DATA", str(REPO.parent / "shared" / "data"))
    disk = parent / "disk.json"
    ci = timed(
        ["bash", ".ci/run"],
        work,
        {**env, "CI": "true", "SEGPIPE_DISK_RECORD": str(disk)},
        parent / "ci.log",
    )
    # .ci/run installs Chromium (apt-get) where it is missing, inside the time measured.
    ci["installed_chromium"] = INSTALLING_CHROMIUM in (parent / "ci.log").read_text()
    # make check with the local Slurm up again: the Slurm executor plugin runs `scontrol show
    # config` whenever Snakemake starts, and with this machine's slurm.conf but no controller
    # (as .ci/run leaves it) each start waits about 9 s for it; a machine without Slurm, or with
    # its controller up, answers at once.
    slurm = work / "tools" / "slurm" / "local-slurm.sh"
    subprocess.run([str(slurm), "start"], cwd=work, capture_output=True, check=False)
    try:
        check = timed(["make", "check"], work, env, parent / "check.log")
    finally:
        subprocess.run([str(slurm), "stop"], cwd=work, capture_output=True, check=False)
    record = json.loads(disk.read_text()) if disk.is_file() else {}
    result = {
        **machine(),
        "commit": commit,
        "ci": ci,
        "check": check,
        "disk": {
            "peak_above_start_bytes": record.get("peak_above_start_bytes"),
            "left_behind_bytes": record.get("left_behind_bytes"),
            "left_behind": record.get("left_behind", []),
        },
        "goals": GOALS,
    }
    write_result(args.out, result)
    if args.keep:
        print(f"clone and logs kept in {parent}")
    else:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
