"""`snakemake --profile profiles/slurm`: how the profile resolves, and the tiny pipeline on a real Slurm.

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
import shlex
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.repo import BIN, REPO, copy_workflow

pytestmark = pytest.mark.slow
TINY = "config/test.yaml"
LOCAL_RULES = {"synthesize", "download", "crossval", "report", "compare", "pretrained"}
LOCAL_RULES |= {"search_rung", "search_select", "search_winner", "search_report"}
GPU_RULES = {"train", "predict"}
# The rules of a model's assessment job (profiles/slurm: group assess_<model>).
ASSESS_RULES = {"predict", "evaluate", "evaluate_no_tta"}
CPU_PARTITION = os.environ.get("SEGPIPE_SLURM_PARTITION") or "cpu"
GPU_PARTITION = os.environ.get("SEGPIPE_SLURM_GPU_PARTITION") or "gpu"
# Hard limit (SIGKILL) of the snakemake call; the whole run takes ~3 min on 2 cores.
HARD_TIMEOUT = int(os.environ.get("SEGPIPE_SLURM_TEST_TIMEOUT", "1500"))
REQUIRE_SLURM = os.environ.get("SEGPIPE_REQUIRE_SLURM", "") not in ("", "0")
# Two runs of the tiny config, one of them cross-validated with 2 folds: three train jobs, all
# submitted at once, on the two fake GPUs.
CV = {
    "train": {"lr": 0.01},
    "split": {"folds": 2},
    "predict": {"ensemble": "folds", "tta": ["hflip"]},
}
TWO_RUNS = {"experiments": {"base": {}, "cv": CV}}
# The models whose metrics the test compares with a local run of the same config: the plain run
# and one fold (the local run makes only these, to leave the CPUs to the Slurm jobs).
MODELS = ["base", "cv/fold1"]
SPLITS = ("val", "test")


def _env() -> dict[str, str]:
    # Jobs inherit this environment (sbatch --export=ALL): the venv's snakemake and python first.
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def slurm_workflow(dest: Path) -> Path:
    """The workflow copied as a user's clone has it; the Slurm profile is `profiles/slurm`, its
    one name (no second copy or link at the top level)."""
    assert not (REPO / "slurm").exists() and not (REPO / "slurm").is_symlink(), (
        "the Slurm profile has one name, profiles/slurm: remove the top-level `slurm`"
    )
    return copy_workflow(dest)


def profile_dry_run(work: Path, *configs: str) -> str:
    """The output of ``snakemake --profile profiles/slurm --configfile CONFIGS -n`` in ``work``; it must
    succeed."""
    proc = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", *configs, "-n"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return out


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


def group_blocks(output: str) -> dict[str, list[dict]]:
    """The group jobs Snakemake printed: group id -> its jobs (as :func:`job_blocks`)."""
    groups = {}
    # Its jobs are indented; Snakemake prints each one's "Shell command" line unindented.
    pattern = (
        r"^\[.*\] Group job (\S+) \(jobs in lexicogr\. order\):\n((?:\n|    .*\n|Shell .*\n)+)"
    )
    for m in re.finditer(pattern, output, re.M):
        members = re.sub(r"^    ", "", m[2], flags=re.M)
        groups[m[1]] = job_blocks(members)
    return groups


def submissions(output: str) -> dict[str, tuple[str, str]]:
    """Snakemake job id (a group's: a UUID) -> (Slurm job id, Slurm log file)."""
    found = re.findall(
        r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output
    )
    return {job: (slurm_id, log) for job, slurm_id, log in found}


def squeue_command() -> list[str]:
    """The `squeue` command docs/slurm.md gives for seeing which rule and run each job is."""
    text = (REPO / "docs" / "slurm.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("squeue ") and "%k" in line]
    assert len(lines) == 1, f"docs/slurm.md should give one squeue command with %k: {lines}"
    return shlex.split(lines[0].split("#")[0])


def run_on_slurm(work: Path, configfiles: list[str], *targets: str):
    """`snakemake --profile profiles/slurm --configfile CONFIGFILES TARGETS` in ``work`` (a short first
    status check), watched: the process, its output, its submissions and the watcher; no job is
    left behind."""
    cmd = [
        "timeout",
        "-s",
        "KILL",
        str(HARD_TIMEOUT),
        str(BIN / "snakemake"),
        "--profile",
        "profiles/slurm",
    ]
    cmd += ["--configfile", *configfiles, "--slurm-init-seconds-before-status-checks", "2"]
    cmd += targets
    with JobWatcher() as watcher:
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=_env())
    output = proc.stdout + proc.stderr
    found = submissions(output)
    if found:
        subprocess.run(["scancel", *(i for i, _ in found.values())], capture_output=True)
    return proc, output, found, watcher


def test_profile_resolves_from_repo_root(tmp_path: Path) -> None:
    """`--profile profiles/slurm` is found from the working directory and maps the config's
    resources."""
    work = slurm_workflow(tmp_path / "wf")
    out = profile_dry_run(work, TINY)
    assert "Using profiles profiles/slurm and workflow specific profile profiles/default" in out, (
        out[:2000]
    )
    cfg = yaml.safe_load((work / TINY).read_text())
    jobs = {job["rule"]: job for job in job_blocks(out)}
    (group,) = group_blocks(out).values()  # the model's assessment job
    jobs.update({job["rule"]: job for job in group})
    assert jobs["train"]["resources"]["gpu"] == str(cfg["train"].get("gpus", 1))
    assert jobs["predict"]["resources"]["gpu"] == "1"
    for rule, job in jobs.items():
        # In the assessment job, evaluate shares predict's (GPU) partition.
        gpu = rule in GPU_RULES | ASSESS_RULES
        partition = GPU_PARTITION if gpu else CPU_PARTITION
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
    out = profile_dry_run(work, "config/model.yaml")
    jobs = {job["rule"]: job for job in job_blocks(out)}
    for group in group_blocks(out).values():
        jobs.update({job["rule"]: job for job in group})
    assert jobs["train"]["resources"]["gpu"] == "2"
    assert jobs["train"]["resources"]["gpu_model"] == "a100"
    assert "gpu_model" not in jobs["predict"]["resources"]  # null: any GPU


def test_runs_of_one_model_train_once_and_each_has_its_assessment_job(tmp_path: Path) -> None:
    """Two runs that differ only in predict.tta share one train job (one GPU job); each run's
    model is still assessed in its own group job, the second from the first's checkpoint."""
    work = slurm_workflow(tmp_path / "wf")
    runs = {"experiments": {"a": {}, "b": {"predict": {"tta": ["hflip"]}}}}
    (work / "config" / "runs.yaml").write_text(yaml.safe_dump(runs))
    out = profile_dry_run(work, TINY, "config/runs.yaml")
    train = [job for job in job_blocks(out) if job["rule"] == "train"]
    assert [job["wildcards"] for job in train] == ["model=a"]
    assessed = sorted(
        ",".join(sorted({job["wildcards"].split("model=")[1].split(",")[0] for job in group}))
        for group in group_blocks(out).values()
    )
    assert assessed == ["a", "b"]


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
    Slurm forgets it (MinJobAge) before the run ends; and the `squeue` command of docs/slurm.md,
    keeping the lines it showed."""

    def __init__(self, interval: float = 3.0) -> None:
        self.jobs: dict[str, dict[str, str]] = {}
        self.squeue_lines: set[str] = set()
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
        shown = subprocess.run(squeue_command(), capture_output=True, text=True, timeout=30)
        self.squeue_lines.update(shown.stdout.splitlines()[1:])

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


def slurm_job(watcher: JobWatcher, slurm_id: str, name: str) -> dict[str, str]:
    """What Slurm says of a finished job: it must know it, as COMPLETED."""
    info = watcher.jobs.get(slurm_id)
    assert info is not None, f"Slurm does not know job {slurm_id} ({name})"
    assert info["JobState"] == "COMPLETED", f"{name}: Slurm job {slurm_id} is {info}"
    return info


def check_assessment_jobs(
    groups: dict[str, list[dict]], submitted: dict[str, tuple[str, str]], watcher: JobWatcher
) -> None:
    """Each model's predict and evaluate jobs ran as one Slurm job on one GPU, sized for its
    largest job and for them all in turn, and named after the group and its model."""
    for group, members in groups.items():
        model = group.removeprefix("assess_")
        rules = Counter(job["rule"] for job in members)
        assert rules["predict"] == 1 and set(rules) <= ASSESS_RULES, (group, rules)
        assert all(job["wildcards"].startswith(f"model={model}") for job in members), members
        found = [(i, log) for i, log in submitted.values() if f"/group_{group}_" in log]
        assert len(found) == 1, f"{group}: one sbatch job, not {found}"
        info = slurm_job(watcher, found[0][0], group)
        assert info["Comment"].startswith(f"rule_{group}_"), info["Comment"]
        assert info["Partition"] == GPU_PARTITION, group
        tres = info.get("TresPerJob", "")
        assert tres in ("gres:gpu:1", "gpu:1") and info["NumNodes"] == "1", (group, tres)
        res = {job["rule"]: job["resources"] for job in members}
        assert megabytes(info["MinMemoryNode"]) >= max(int(r["mem_mb"]) for r in res.values())
        least = int(res["predict"]["runtime"]) + int(res["evaluate"]["runtime"])
        assert minutes(info["TimeLimit"]) >= least, (group, info["TimeLimit"])


def test_pipeline_on_slurm(slurm, tmp_path: Path) -> None:
    """Two runs of the tiny config, one with 2 folds and flips: each model's train job is its own
    GPU job, all submitted at once, and each model's predictions and scores are one more GPU job
    (its assessment)."""
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
    cmd += ["--profile", "profiles/slurm", "--configfile", TINY, "config/runs.yaml"]
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
            submitted = {job: slurm_id for job, (slurm_id, _) in submissions(output).items()}
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
        pytest.fail(f"snakemake --profile profiles/slurm killed after {HARD_TIMEOUT} s{context}")
    assert proc.returncode == 0, (
        f"snakemake --profile profiles/slurm failed ({elapsed:.0f} s){context}"
    )
    assert local.returncode == 0, (tmp_path / "local.log").read_text()[-6000:]
    print(f"pipeline on Slurm: {elapsed:.0f} s, {len(submitted)} sbatch jobs")

    jobs = job_blocks(output)
    groups = group_blocks(output)
    ran = {job["rule"] for job in jobs} | {j["rule"] for g in groups.values() for j in g}
    assert {"remap", "split", "train", "predict", "evaluate", "report", "compare"} <= ran, ran
    remote = {job["jobid"] for job in jobs if job["rule"] not in LOCAL_RULES | {"all"}}
    assert len(submitted) == len(remote) + len(groups), f"sbatch jobs {submitted}{context}"
    assert remote <= set(submitted), f"sbatch jobs {submitted} for Snakemake jobs {remote}"
    for job in jobs:
        if job["rule"] in LOCAL_RULES | {"all"}:
            assert job["local"], f"{job['rule']} must be a local rule"
            assert job["jobid"] not in submitted, f"local rule {job['rule']} went to Slurm"
            continue
        # Every other job was its own sbatch job that Slurm reports as COMPLETED.
        name = f"{job['rule']} {job['wildcards']}".strip()
        assert job["rule"] not in ASSESS_RULES, f"{name} ran outside a model's assessment job"
        assert not job["local"], f"{name} ran locally, not on Slurm"
        assert job["jobid"] in submitted, f"{name} was not submitted with sbatch{context}"
        info = slurm_job(watcher, submitted[job["jobid"]], name)
        wildcards = "_".join(re.findall(r"=([^,]+)", job["wildcards"])).replace("/", "_")
        assert info["Comment"] == f"rule_{job['rule']}" + (
            f"_wildcards_{wildcards}" if wildcards else ""
        ), info["Comment"]
        # Partition, CPUs per task, memory and time limit as the config and the profile say.
        res = job["resources"]
        assert info["Partition"] == res["slurm_partition"], name
        assert int(info["CPUs/Task"]) == job["threads"], name
        assert megabytes(info["MinMemoryNode"]) == int(res["mem_mb"]), name
        assert minutes(info["TimeLimit"]) == int(res["runtime"]), name
        tres = info.get("TresPerJob", "")
        if job["rule"] in GPU_RULES:
            assert info["Partition"] == GPU_PARTITION, name
            gpus = cfg["train"].get("gpus", 1)
            assert tres in (f"gres:gpu:{gpus}", f"gpu:{gpus}"), f"{name}: GPU request {tres!r}"
            assert info["NumNodes"] == "1", f"{name}: GPUs must be on one node"
        else:
            assert info["Partition"] == CPU_PARTITION, name
            assert "gpu" not in tres, f"{name} asked for a GPU: {tres!r}"
    check_assessment_jobs(groups, submissions(output), watcher)
    # After the shared data jobs, each model submitted at most two jobs: train and assess.
    trains = [job["wildcards"].removeprefix("model=") for job in jobs if job["rule"] == "train"]
    per_model = Counter(trains) + Counter(group.removeprefix("assess_") for group in groups)
    assert set(per_model) == {"base", "cv/fold0", "cv/fold1", "cv/ensemble"}, per_model
    assert max(per_model.values()) == 2 and per_model["cv/ensemble"] == 1, per_model

    # `squeue` as docs/slurm.md gives it shows which rule and which run each job is.
    shown = "\n".join(watcher.squeue_lines)
    for comment in ("rule_train_wildcards_cv_fold1", "rule_assess_cv/fold0_"):
        assert comment in shown, f"{comment!r} not in the documented squeue output:\n{shown}"

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


def test_a_failed_job_names_its_slurm_log(slurm, tmp_path: Path) -> None:
    """A job that fails on Slurm is reported with the path of its Slurm log, which holds the
    error (the first job to go to Slurm, remap, fails here on purpose)."""
    work = slurm_workflow(tmp_path / "wf")
    (work / "scripts" / "remap.py").write_text('import sys\n\nsys.exit("remap fails on purpose")\n')
    cmd = [str(BIN / "snakemake"), "--profile", "profiles/slurm", "--configfile", TINY]
    cmd += ["--slurm-init-seconds-before-status-checks", "2"]
    proc = subprocess.run(
        cmd, cwd=work, capture_output=True, text=True, env=_env(), timeout=HARD_TIMEOUT
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-4000:]
    ((slurm_id, log),) = submissions(output).values()
    assert re.search(rf"Error in rule remap:\n(?:    .*\n)*    log: .*{re.escape(log)}", output), (
        output[-4000:]
    )
    assert Path(log).is_file() and "remap fails on purpose" in Path(log).read_text(), log
    assert f"/rule_remap/{slurm_id}.log" in log


def search_train_spans(work: Path, search: dict, target: str) -> dict[tuple[str, str], list[str]]:
    """Run a search of the tiny config on Slurm towards ``target``: every job but the local
    rules went to Slurm, each search_train job as a GPU job; returns (candidate, rung) -> its
    Slurm [SubmitTime, StartTime, EndTime], each trained once."""
    (work / "config" / "search.yaml").write_text(yaml.safe_dump(search))
    proc, output, found, watcher = run_on_slurm(work, [TINY, "config/search.yaml"], target)
    assert proc.returncode == 0, output[-8000:]
    jobs = {job["jobid"]: job for job in job_blocks(output)}
    spans: dict[tuple[str, str], list[str]] = {}
    for jobid, (slurm_id, _) in found.items():
        job = jobs[jobid]
        assert job["rule"] not in LOCAL_RULES, f"local rule {job['rule']} went to Slurm"
        if job["rule"] == "search_train":
            info = slurm_job(watcher, slurm_id, job["wildcards"])
            assert info["Partition"] == GPU_PARTITION and "gpu" in info.get("TresPerJob", "")
            key = re.search(r"run=([^,]+), rung=(\d)", job["wildcards"]).groups()
            assert key not in spans, f"{key} trained twice"
            spans[key] = [info[k] for k in ("SubmitTime", "StartTime", "EndTime")]
    return spans


BRACKETS = {
    "grid": {"train.lr": [0.001, 0.003, 0.01]},
    "search": {"min_epochs": 1, "max_epochs": 4, "eta": 2, "brackets": 2},
    "train": {"warmup_epochs": 0},
}


def test_search_on_slurm(slurm, tmp_path: Path) -> None:
    """A search of 3 candidates in two brackets over rungs of 1, 2 and 4 epochs (eta 2): the
    rung-0 train jobs are GPU jobs that run at the same time; bracket 1 trains every candidate
    to 2 epochs without waiting for bracket 0's decisions, so the rung-1 job of the candidate
    bracket 0 stopped is submitted beside the jobs bracket 0 goes on with; each candidate's rung is one
    GPU job whichever brackets need it, and resumes from its rung-0 checkpoint; rungs and the
    selection across the brackets are decided on the submitting machine."""
    work = slurm_workflow(tmp_path / "wf")
    spans = search_train_spans(work, BRACKETS, "results/search/winner.csv")
    rung0_spans = [span[1:] for (_, rung), span in spans.items() if rung == "0"]
    assert len(rung0_spans) == 3, spans
    assert any(a[0] < b[1] and b[0] < a[1] for a, b in itertools.combinations(rung0_spans, 2)), (
        f"no two rung-0 train jobs overlapped: {rung0_spans}"
    )
    for run in {run for run, rung in spans if rung == "1"}:
        log = (work / "logs" / "search_train" / run / "rung1.log").read_text()
        assert "at the end of epoch 1" in log and "continuing epochs 2..2" in log, log[-3000:]
    search = work / "results" / "search"
    rung0 = pd.read_csv(search / "bracket0" / "rung0.csv")
    (stopped,) = rung0.loc[rung0["promoted"] == "no", "candidate"]
    assert sorted(run for run, rung in spans if rung == "1") == sorted(rung0["candidate"])
    # The local cluster has fewer GPUs than rung-1 jobs, so which of them waits for a GPU is
    # Slurm's choice: the stopped candidate's job is judged by when it was submitted. Had it
    # waited for bracket 0's rung-1 decision, it could not be submitted before the last of
    # bracket 0's rung-1 jobs ended (an earlier one may end first: the stopped candidate's
    # rung 0 can be the last to get a GPU).
    bracket0_ends = [
        end for (run, rung), (_, _, end) in spans.items() if rung == "1" and run != stopped
    ]
    assert spans[(stopped, "1")][0] < max(bracket0_ends), (
        f"bracket 1's rung-1 job of {stopped} waited for bracket 0's rung 1: {spans}"
    )
    selection = pd.read_csv(search / "winner.csv")
    assert selection["bracket"].tolist() == [0, 1] and (selection["winner"] == "yes").sum() == 1


def test_a_planned_config_asks_slurm_for_its_planned_job_sizes(tmp_path: Path) -> None:
    """`segpipe plan`, then `snakemake --profile profiles/slurm --configfile <planned>`: every
    job of the planned config goes to Slurm with the memory and time the plan measured and
    estimated, the train job on the GPU partition (the profile's dry run: test_pipeline_on_slurm
    runs the profile's jobs for real)."""
    from segpipe.data.synthetic import make_oxford_like

    work = slurm_workflow(tmp_path / "wf")
    make_oxford_like(tmp_path / "pets", n_images=40, seed=2, min_size=40, max_size=56)
    plan = [str(BIN / "segpipe"), "plan", str(tmp_path / "pets"), "--layout", "oxford"]
    plan += ["--device", "cpu", "--max-size", "32", "--memory-gb", "4", "-o", "config/pets.yaml"]
    proc = subprocess.run(plan, cwd=work, capture_output=True, text=True, env=_env(), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    planned = yaml.safe_load((work / "config" / "pets.yaml").read_text())
    out = profile_dry_run(work, "config/pets.yaml")
    jobs = {job["rule"]: job for job in job_blocks(out)}
    for group in group_blocks(out).values():
        jobs.update({job["rule"]: job for job in group})
    for rule, asked in planned["resources"].items():
        if rule in jobs and not jobs[rule]["local"]:
            assert jobs[rule]["resources"]["mem_mb"] == str(asked["mem_mb"]), rule
            assert jobs[rule]["resources"]["runtime"] == str(asked["runtime"]), rule
    assert jobs["train"]["resources"]["slurm_partition"] == GPU_PARTITION
    assert planned["run_name"] in out and "oxford-pets-unet" not in out
