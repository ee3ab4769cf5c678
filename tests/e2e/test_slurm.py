"""`snakemake --profile slurm`: how the profile resolves, and the tiny pipeline on a real Slurm.

The Slurm test needs a running Slurm with the partitions the profile names (by default `cpu`
and `gpu`, a GPU gres on the node), e.g. the single-node one of `tools/slurm/local-slurm.sh
start`. Without one it skips with the reason; with SEGPIPE_REQUIRE_SLURM=1 (set by .ci/run) it
fails instead.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, copy_workflow

pytestmark = pytest.mark.slow
TINY = "config/test.yaml"
LOCAL_RULES = {"synthesize", "download", "crossval", "report", "compare"}
GPU_RULES = {"train", "predict"}
CPU_PARTITION = os.environ.get("SEGPIPE_SLURM_PARTITION") or "cpu"
GPU_PARTITION = os.environ.get("SEGPIPE_SLURM_GPU_PARTITION") or "gpu"
# Hard limit (SIGKILL) of the snakemake call; the whole run takes ~5-7 min on 2 cores.
HARD_TIMEOUT = int(os.environ.get("SEGPIPE_SLURM_TEST_TIMEOUT", "1500"))
REQUIRE_SLURM = os.environ.get("SEGPIPE_REQUIRE_SLURM", "") not in ("", "0")
# Two runs of the tiny config, one of them cross-validated with 2 folds: three train jobs, all
# submitted at once, on the two fake GPUs.
TWO_RUNS = {"experiments": {"base": {}, "cv": {"train": {"lr": 0.01}, "split": {"folds": 2}}}}
# The models whose metrics the test compares with a local run of the same config: the plain run
# and one fold (the local run makes only these, to leave the CPUs to the Slurm jobs).
MODELS = ["base", "cv/fold1"]
SPLITS = ("val", "test")


def _env() -> dict[str, str]:
    # Jobs inherit this environment (sbatch --export=ALL): the venv's snakemake and python first.
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def slurm_workflow(dest: Path) -> Path:
    """The workflow copied as a user's clone has it, the top-level `slurm` profile link included."""
    link = REPO / "slurm"
    assert link.is_symlink() and link.resolve() == (REPO / "profiles" / "slurm").resolve(), (
        "the repository's top-level `slurm` must be a symlink to profiles/slurm"
    )
    work = copy_workflow(dest)
    os.symlink(os.readlink(link), work / "slurm")
    return work


def job_blocks(output: str) -> list[dict]:
    """The jobs Snakemake printed: rule, local or not, jobid, threads, resources, wildcards."""
    jobs = []
    for m in re.finditer(r"^(localrule|rule) (\w+):\n((?:    .*\n)+)", output, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m[3], re.M))
        resources = dict(re.findall(r"(\w+)=([^,]+)", fields.get("resources", "")))
        jobs.append(
            {
                "rule": m[2],
                "local": m[1] == "localrule",
                "jobid": fields.get("jobid"),
                "threads": int(fields.get("threads", 1)),
                "resources": resources,
                "wildcards": fields.get("wildcards", ""),
            }
        )
    return jobs


def test_profile_resolves_from_repo_root(tmp_path: Path) -> None:
    """`--profile slurm` is found in the working directory and maps the config's resources."""
    work = slurm_workflow(tmp_path / "wf")
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "slurm", "--configfile", TINY, "-n"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Using profiles slurm and workflow specific profile profiles/default" in out, out[:2000]
    cfg = yaml.safe_load((work / TINY).read_text())
    jobs = {job["rule"]: job for job in job_blocks(out)}
    assert jobs["train"]["resources"]["gpu"] == str(cfg["train"].get("gpus", 1))
    assert jobs["predict"]["resources"]["gpu"] == "1"
    for rule, job in jobs.items():
        partition = GPU_PARTITION if rule in GPU_RULES else CPU_PARTITION
        assert job["resources"]["slurm_partition"] == partition, rule
        if rule not in GPU_RULES:
            assert "gpu" not in job["resources"], rule
        if rule in cfg["resources"]:
            assert job["resources"]["mem_mb"] == str(cfg["resources"][rule]["mem_mb"]), rule
            assert job["resources"]["runtime"] == str(cfg["resources"][rule]["runtime"]), rule


def test_gpu_model_reaches_the_request(tmp_path: Path) -> None:
    """resources.<rule>.gpu_model becomes the plugin's gpu_model (sbatch --gpus=<model>:<n>)."""
    work = slurm_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((work / TINY).read_text())
    cfg["resources"]["train"]["gpu_model"] = "a100"
    cfg["train"]["gpus"] = 2
    (work / "config" / "model.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "slurm", "--configfile", "config/model.yaml", "-n"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    jobs = {job["rule"]: job for job in job_blocks(proc.stdout + proc.stderr)}
    assert jobs["train"]["resources"]["gpu"] == "2"
    assert jobs["train"]["resources"]["gpu_model"] == "a100"
    assert "gpu_model" not in jobs["predict"]["resources"]  # null: any GPU


# --- a real Slurm ---------------------------------------------------------------------------


def slurm_problem() -> str | None:
    """Why the Slurm test cannot run here, or None."""
    for tool in ("sbatch", "squeue", "scontrol", "sinfo", "scancel"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%R %a %t %G"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`sinfo` did not answer within 30 s"
    if proc.returncode != 0:
        return f"`sinfo` failed: {proc.stderr.strip()}"
    rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    for partition in (CPU_PARTITION, GPU_PARTITION):
        states = [r[2] for r in rows if r[0] == partition and r[1] == "up"]
        if not states:
            return f"no partition '{partition}' that is up (sinfo: {proc.stdout.strip()!r})"
        if not any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states):
            return f"no usable node in partition '{partition}' (states {states})"
    if not any(r[0] == GPU_PARTITION and "gpu" in r[3] for r in rows if len(r) > 3):
        return f"partition '{GPU_PARTITION}' has no GPU gres"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = slurm_problem()
    if problem:
        reason = (
            f"no usable Slurm: {problem}. Start a local one as root with "
            "`tools/slurm/local-slurm.sh start` (or `make slurm-start`)."
        )
        if REQUIRE_SLURM:
            pytest.fail(f"SEGPIPE_REQUIRE_SLURM is set but there is {reason}")
        pytest.skip(reason)


class JobWatcher:
    """Polls `scontrol show job` while the run lives, so no finished job is missed even when
    Slurm forgets it (MinJobAge) before the run ends."""

    def __init__(self, interval: float = 3.0) -> None:
        self.jobs: dict[str, dict[str, str]] = {}
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> None:
        proc = subprocess.run(
            ["scontrol", "show", "job", "-o"], capture_output=True, text=True, timeout=30
        )
        for line in proc.stdout.splitlines():
            if line.startswith("JobId="):
                fields = dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", line))
                self.jobs[fields["JobId"]] = fields

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.poll()

    def __enter__(self) -> JobWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()


def minutes(limit: str) -> int:
    """Slurm's TimeLimit ([D-]HH:MM:SS) in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def megabytes(mem: str) -> int:
    factor = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    return round(float(mem[:-1]) * factor[mem[-1]]) if mem[-1] in factor else int(mem)


def test_pipeline_on_slurm(slurm, tmp_path: Path) -> None:
    """Two runs of the tiny config, one with 2 folds: each model's train job is its own GPU job,
    all submitted at once."""
    work = slurm_workflow(tmp_path / "slurm")
    ref = copy_workflow(tmp_path / "local")
    cfg = yaml.safe_load((work / TINY).read_text())
    assert cfg["train"]["device"] == "cpu", "the fake GPUs are /dev/null: train on the CPU"
    for root in (work, ref):
        (root / "config" / "runs.yaml").write_text(yaml.safe_dump(TWO_RUNS))

    # The same config run locally, as the reference for the metrics (in parallel: the Slurm run
    # mostly waits for its status checks).
    local_log = (tmp_path / "local.log").open("w")
    targets = [f"results/runs/{m}/evaluate/{s}/metrics.json" for m in MODELS for s in SPLITS]
    local = subprocess.Popen(
        [str(BIN / "snakemake"), "--configfile", TINY, "config/runs.yaml", "--cores", "2"]
        + targets,
        cwd=ref,
        stdout=local_log,
        stderr=subprocess.STDOUT,
        env=_env(),
    )

    # Exactly the user's command, plus the tiny config and a short first status check (the
    # profile keeps the plugin's 40 s, sized for real jobs).
    cmd = ["timeout", "-s", "KILL", str(HARD_TIMEOUT), str(BIN / "snakemake")]
    cmd += ["--profile", "slurm", "--configfile", TINY, "config/runs.yaml"]
    cmd += ["--slurm-init-seconds-before-status-checks", "2"]
    log_path = tmp_path / "slurm.log"
    t0 = time.monotonic()
    with JobWatcher() as watcher, log_path.open("w") as log:
        try:
            proc = subprocess.run(
                cmd,
                cwd=work,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
                timeout=HARD_TIMEOUT + 60,
            )
        finally:
            output = log_path.read_text()
            submitted = dict(
                re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output)
            )
            # Leave no job behind, whatever happened.
            if submitted:
                subprocess.run(["scancel", *submitted.values()], capture_output=True, timeout=60)
    elapsed = time.monotonic() - t0
    try:
        local.wait(timeout=900)
    finally:
        if local.poll() is None:
            local.kill()
        local_log.close()

    slurm_logs = "\n".join(
        f"--- {p}\n{p.read_text()[-3000:]}"
        for p in sorted((work / ".snakemake" / "slurm_logs").rglob("*.log"))
    )
    context = f"\n{output[-8000:]}\n{slurm_logs[-12000:]}"
    if proc.returncode == -9 or proc.returncode == 137:
        pytest.fail(f"snakemake --profile slurm killed after {HARD_TIMEOUT} s{context}")
    assert proc.returncode == 0, f"snakemake --profile slurm failed ({elapsed:.0f} s){context}"
    assert local.returncode == 0, (tmp_path / "local.log").read_text()[-6000:]
    print(f"pipeline on Slurm: {elapsed:.0f} s, {len(submitted)} sbatch jobs")

    jobs = job_blocks(output)
    ran = {job["rule"] for job in jobs}
    assert {"remap", "split", "train", "predict", "evaluate", "report", "compare"} <= ran, ran
    remote = {job["jobid"] for job in jobs if job["rule"] not in LOCAL_RULES | {"all"}}
    assert set(submitted) == remote, f"sbatch jobs {submitted} for Snakemake jobs {remote}"
    for job in jobs:
        if job["rule"] in LOCAL_RULES | {"all"}:
            assert job["local"], f"{job['rule']} must be a local rule"
            assert job["jobid"] not in submitted, f"local rule {job['rule']} went to Slurm"
            continue
        # Every other job was its own sbatch job that Slurm reports as COMPLETED.
        name = f"{job['rule']} {job['wildcards']}".strip()
        assert not job["local"], f"{name} ran locally, not on Slurm"
        assert job["jobid"] in submitted, f"{name} was not submitted with sbatch{context}"
        slurm_id = submitted[job["jobid"]]
        info = watcher.jobs.get(slurm_id)
        assert info is not None, f"Slurm does not know job {slurm_id} ({name})"
        assert info["JobState"] == "COMPLETED", f"{name}: Slurm job {slurm_id} is {info}"
        assert info["Comment"].startswith(f"rule_{job['rule']}"), info["Comment"]
        # Partition, CPUs per task, memory and time limit as the config and the profile say.
        res = job["resources"]
        assert info["Partition"] == res["slurm_partition"], name
        assert int(info["CPUs/Task"]) == job["threads"], name
        assert megabytes(info["MinMemoryNode"]) == int(res["mem_mb"]), name
        assert minutes(info["TimeLimit"]) == int(res["runtime"]), name
        tres = info.get("TresPerJob", "")
        if job["rule"] in GPU_RULES:
            assert info["Partition"] == GPU_PARTITION, name
            gpus = cfg["train"].get("gpus", 1) if job["rule"] == "train" else 1
            assert tres in (f"gres:gpu:{gpus}", f"gpu:{gpus}"), f"{name}: GPU request {tres!r}"
            assert info["NumNodes"] == "1", f"{name}: GPUs must be on one node"
        else:
            assert info["Partition"] == CPU_PARTITION, name
            assert "gpu" not in tres, f"{name} asked for a GPU: {tres!r}"

    # The three train jobs (a run, two folds) were all submitted before any ended, each with its
    # own GPU request; two ran at the same time (two GPUs).
    trains = [submitted[job["jobid"]] for job in jobs if job["rule"] == "train"]
    assert len(trains) == 3, trains
    times = {
        i: [watcher.jobs[i][k] for k in ("SubmitTime", "StartTime", "EndTime")] for i in trains
    }
    first_end = min(end for _, _, end in times.values())
    assert all(submit < first_end for submit, _, _ in times.values()), times
    assert any(a[1] < b[2] and b[1] < a[2] for a, b in itertools.combinations(times.values(), 2)), (
        f"no two train jobs overlapped: {times}"
    )

    # Same config, same results as the local run.
    for model, split in itertools.product(MODELS, SPLITS):
        metrics = Path("results/runs", model, "evaluate", split, "metrics.json")
        got = json.loads((work / metrics).read_text())
        want = json.loads((ref / metrics).read_text())
        assert got == want, f"{model} {split} metrics differ between the Slurm and the local run"
    assert (work / "results" / "runs" / "cv" / "crossval" / "metrics.json").exists()
    for run in TWO_RUNS["experiments"]:
        assert (work / "results" / "runs" / run / "report" / "report.html").exists()
    assert (work / "results" / "compare" / "report.html").exists()
