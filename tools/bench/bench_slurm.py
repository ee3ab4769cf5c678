"""Slurm jobs and wall time of `snakemake --profile profiles/slurm`, for a commit of this repository.

Runs the user's command, with the profile as committed, on a running Slurm (e.g. the single-node
one of `tools/slurm/local-slurm.sh start`) in a fresh export of ``--rev`` (`git archive`; its own
package first on PYTHONPATH, so its jobs run its code), for two configs:

- ``demo``: config/demo.yaml, the two runs of `make demo`;
- ``grid4-tta``: the demo config as a 4-run grid (2 encoders x 2 learning rates) with
  ``predict.tta: [hflip]``, 4 epochs.

Per case it records the wall time, the sbatch submissions by rule or group (from Snakemake's
"has been submitted with SLURM jobid" lines, whose Slurm log path names the rule or group), how
many of them asked for a GPU, and the seconds and CPU seconds of each rule's jobs (Snakemake's
benchmark files). Results merge into the JSON under the label (``before``/``after``):

    python tools/bench/bench_slurm.py --rev 4df1a94 --label before
    python tools/bench/bench_slurm.py --rev HEAD --label after
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml
from record import BIN, export, machine, rule_costs, write_result

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "tools" / "bench" / "results" / "slurm-cpu-2cores.json"
GRID = {
    "grid": {"train.encoder": ["resnet18", "mobilenet_v2"], "train.lr": [0.003, 0.01]},
    "predict": {"tta": ["hflip"]},
    "train": {"epochs": 4},
}
CASES = {"demo": {}, "grid4-tta": GRID}
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
GPU_RULES = ("train", "predict", "predict_no_tta", "assess")


def job_kind(log: str) -> str:
    """``rule_<rule>`` or ``group_<group>`` of a Slurm log path
    (.snakemake/slurm_logs/<kind>/...), the group's model left out."""
    part = Path(log).parts[Path(log).parts.index("slurm_logs") + 1]
    return re.sub(r"^group_assess_.*", "group_assess", part)


def run_case(work: Path, extra: dict, timeout: int) -> dict:
    """Run the demo config (with ``extra`` on top) under the slurm profile in ``work``."""
    (work / "config" / "bench.yaml").write_text(yaml.safe_dump(extra))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(work / "src"),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/slurm"]
    cmd += ["--configfile", "config/demo.yaml", "config/bench.yaml"]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=work, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    wall = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"snakemake --profile profiles/slurm failed in {work}:\n{output[-6000:]}")
    kinds = Counter(job_kind(log) for _, log in SUBMITTED.findall(output))
    gpu = sum(n for kind, n in kinds.items() if kind.split("_", 1)[1] in GPU_RULES)
    return {
        "wall_s": round(wall, 1),
        "sbatch_jobs": sum(kinds.values()),
        "gpu_jobs": gpu,
        "jobs_by_kind": dict(sorted(kinds.items())),
        "rules": rule_costs(work),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD", help="commit to measure (default HEAD)")
    parser.add_argument("--label", required=True, help="where in the JSON: before, after")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per case")
    args = parser.parse_args()
    record = json.loads(OUT.read_text()) if OUT.exists() else {}
    record.update(machine())
    record["command"] = (
        "snakemake --profile profiles/slurm --configfile config/demo.yaml config/bench.yaml"
    )
    record["cases"] = {name: {"overrides": extra} for name, extra in CASES.items()} | {
        name: case for name, case in record.get("cases", {}).items()
    }
    for name in args.cases:
        with tempfile.TemporaryDirectory(prefix=f"bench-slurm-{name}-", dir=REPO.parent) as tmp:
            work = Path(tmp)
            commit = export(args.rev, work)
            result = run_case(work, CASES[name], args.timeout)
        record["cases"][name]["overrides"] = CASES[name]
        record["cases"][name][args.label] = {"commit": commit[:12], **result}
        print(
            f"{name} ({args.label}, {commit[:12]}): {result['wall_s']} s, "
            f"{result['sbatch_jobs']} sbatch jobs ({result['gpu_jobs']} GPU)"
        )
    write_result(OUT, record)


if __name__ == "__main__":
    main()
