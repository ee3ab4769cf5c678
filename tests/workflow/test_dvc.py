"""DVC versioning: dvc.yaml generated from the Snakemake DAG, dvc.lock recorded after each run,
a push/pull round trip that Snakemake does not rerun, and metrics/params/plots across commits."""

from __future__ import annotations

import filecmp
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from configobj import ConfigObj

from segpipe.evaluation.evaluate import confusion_long
from segpipe.workflow import dvc as sdvc

from helpers.repo import BIN, REPO, copy_workflow, planned_rules, snakemake

TINY = "config/test.yaml"
RECORDED = "recorded the artifacts' hashes in dvc.lock"

SUMMARY = """\
Using workflow specific profile profiles/default for setting default command line arguments.
output_file\tdate\trule\tlog-file(s)\tstatus\tplan
results/runs/ci-tiny/report/report.html\tSun Nov 22 03:17:30 2026\treport\t-\tok\tno update
results/remap/masks\t-\tremap\t-\tmissing\tupdate pending
"""

OUTPUTS = [
    "results/download/dataset",
    "results/remap/masks",
    "results/runs/ci-tiny/train/best.pt",
    "results/runs/ci-tiny/train/last.pt",
    "results/runs/ci-tiny/train/history.csv",
    "results/runs/ci-tiny/evaluate/val/metrics.json",
    "results/runs/ci-tiny/evaluate/test/metrics.json",
    "results/runs/ci-tiny/evaluate/val/confusion_counts.csv",
    "results/runs/ci-tiny/evaluate/test/confusion_counts.csv",
    "results/runs/ci-tiny/report/report.html",
]


# --- units ------------------------------------------------------------------------------------


def test_parse_summary() -> None:
    rows = sdvc.parse_summary(SUMMARY)
    assert [r["output_file"] for r in rows] == [
        "results/runs/ci-tiny/report/report.html",
        "results/remap/masks",
    ]
    assert [r["plan"] for r in rows] == ["no update", "update pending"]
    with pytest.raises(sdvc.DvcError, match="no table"):
        sdvc.parse_summary("Building DAG of jobs...\n")


def test_build_dvc_yaml_tracks_every_output() -> None:
    content = sdvc.build_dvc_yaml(OUTPUTS, code=["Snakefile", "rules"])
    stage = content["stages"][sdvc.STAGE]
    assert stage["cmd"].startswith("snakemake")
    assert stage["deps"] == ["Snakefile", "rules"]
    assert stage["params"] == [{"config/config.yaml": None}]  # the whole file
    outs = [next(iter(o)) for o in stage["outs"]]
    metrics = [next(iter(m)) for m in stage["metrics"]]
    assert metrics == [
        "results/runs/ci-tiny/evaluate/test/metrics.json",
        "results/runs/ci-tiny/evaluate/val/metrics.json",
    ]
    assert sorted(outs + metrics) == sorted(OUTPUTS)  # every DAG output, nothing else
    assert all(opts == {"persist": True} for o in stage["outs"] for opts in o.values())
    plots = {name: spec for p in content["plots"] for name, spec in p.items()}
    assert plots["loss"]["y"] == {
        "results/runs/ci-tiny/train/history.csv": ["train_loss", "val_loss"]
    }
    assert plots["confusion"]["template"] == "confusion_counts"
    assert set(plots["confusion"]["y"]) == {
        "results/runs/ci-tiny/evaluate/val/confusion_counts.csv",
        "results/runs/ci-tiny/evaluate/test/confusion_counts.csv",
    }
    assert content["artifacts"]["model"]["path"] == "results/runs/ci-tiny/train/best.pt"
    with pytest.raises(sdvc.DvcError, match="history.csv"):
        sdvc.build_dvc_yaml([o for o in OUTPUTS if "history" not in o])


def test_build_dvc_yaml_records_every_run() -> None:
    runs = ["encoder-resnet18_loss-ce+dice", "mini"]
    outputs = [
        f"results/runs/{run}/{path}"
        for run in runs
        for path in ("train/best.pt", "train/history.csv", "evaluate/test/metrics.json")
    ]
    content = sdvc.build_dvc_yaml([*outputs, "results/compare/report.html"], code=["Snakefile"])
    metrics = [next(iter(m)) for m in content["stages"][sdvc.STAGE]["metrics"]]
    assert metrics == [f"results/runs/{run}/evaluate/test/metrics.json" for run in runs]
    plots = {name: spec for p in content["plots"] for name, spec in p.items()}
    assert set(plots["validation"]["y"]) == {
        f"results/runs/{run}/train/history.csv" for run in runs
    }
    assert {name: a["path"] for name, a in content["artifacts"].items()} == {
        "model-encoder-resnet18-loss-ce-dice": "results/runs/encoder-resnet18_loss-ce+dice/train/best.pt",
        "model-mini": "results/runs/mini/train/best.pt",
    }


def test_render_writes_a_wholly_tracked_params_file() -> None:
    content = sdvc.build_dvc_yaml(OUTPUTS, code=["Snakefile"])
    text = sdvc.render_dvc_yaml(content)
    assert text.startswith("# GENERATED")
    assert "    - config/config.yaml:\n    outs:" in text
    assert yaml.safe_load(text) == content


@pytest.mark.slow
def test_committed_dvc_yaml_is_current(tmp_path: Path) -> None:
    """dvc.yaml is what `python -m segpipe.workflow.dvc generate` makes of the Snakefile: no drift."""
    work = copy_workflow(tmp_path)
    shutil.copytree(
        REPO / "src" / "segpipe",
        work / "src" / "segpipe",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy2(REPO / "dvc.yaml", work / "dvc.yaml")
    stale = sdvc.generate(work, check=True)
    assert not stale, (
        "dvc.yaml is stale: run `python -m segpipe.workflow.dvc generate` and commit it"
    )


def test_dvc_config_is_offline_and_safe() -> None:
    cfg = ConfigObj(str(REPO / ".dvc" / "config"))
    # Copies (or copy-on-write reflinks): nothing done to an output can reach the cache.
    assert cfg["cache"]["type"] == "reflink,copy"
    assert cfg["core"]["remote"] == "storage"
    assert cfg["core"]["analytics"] == "false"
    url = cfg['remote "storage"']["url"]
    assert "://" not in url  # a local directory: works offline
    template = json.loads((REPO / ".dvc" / "plots" / "confusion_counts.json").read_text())
    text = json.dumps(template)
    for anchor in ("DATA", "X", "Y", "GROUP_BY_Y", "TITLE"):
        assert f"<DVC_METRIC_{anchor}>" in text
    ignore = (REPO / ".dvcignore").read_text().split()
    assert ".snakemake_timestamp" in ignore and "__pycache__/" in ignore


def test_confusion_long() -> None:
    matrix = torch.tensor([[5, 1], [0, 3]])
    df = confusion_long(matrix, ["pet", "background"])
    assert df.to_dict("records") == [
        {"actual": "pet", "predicted": "pet", "count": 5},
        {"actual": "pet", "predicted": "background", "count": 1},
        {"actual": "background", "predicted": "pet", "count": 0},
        {"actual": "background", "predicted": "background", "count": 3},
    ]


def test_not_recorded_outside_a_dvc_repo(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    assert not sdvc.record_after_run({}, workdir=tmp_path)
    assert "not a DVC repository" in caplog.text
    (tmp_path / ".dvc").mkdir()
    assert not sdvc.record_after_run({}, touch=True, workdir=tmp_path)
    assert "--touch" in caplog.text


def test_pull_outside_a_dvc_repo_says_so(tmp_path: Path, capsys) -> None:
    """One line naming the folder (dvc pull --quiet failed with its own message silenced)."""
    assert sdvc.main(["-C", str(tmp_path), "pull"]) == 1
    err = capsys.readouterr().err
    assert err == f"error: not pulling: {tmp_path.resolve()} is not a DVC repository (no .dvc/)\n"


def test_why_not_record(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "config").mkdir()
    shutil.copy2(REPO / "config" / "schema.yaml", tmp_path / "config" / "schema.yaml")
    shutil.copy2(REPO / TINY, tmp_path / "config" / "config.yaml")
    from segpipe.workflow.config import load_schema, validate_config

    own = validate_config(
        yaml.safe_load((REPO / TINY).read_text()), load_schema(REPO / "config" / "schema.yaml")
    )
    assert sdvc.why_not_record(tmp_path, own) is None
    assert sdvc.why_not_record(tmp_path, {**own, "resources": {}}) is None  # scheduling only
    other = {**own, "train": {**own["train"], "epochs": 99}}
    assert "differs from config/config.yaml in train" in sdvc.why_not_record(tmp_path, other)
    monkeypatch.setenv("DVC_STAGE", "pipeline")
    assert "dvc repro" in sdvc.why_not_record(tmp_path, own)


# --- end to end: real git, real DVC -----------------------------------------------------------


def run(cwd: Path, *cmd: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
    return proc.stdout


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", *args)


def dvc(cwd: Path, *args: str) -> str:
    return run(cwd, str(BIN / "dvc"), *args)


def job_stats(output: str) -> dict[str, int]:
    """Rule -> jobs run, from the 'Job stats' table of a snakemake run."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", table, re.M)}


def make_repo(path: Path) -> Path:
    """The project as a user's git + DVC repository, config/config.yaml being the tiny config."""
    work = copy_workflow(path)
    shutil.copytree(
        REPO / "src" / "segpipe",
        work / "src" / "segpipe",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (work / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(REPO / ".dvc" / name, work / ".dvc" / name)
    shutil.copytree(REPO / ".dvc" / "plots", work / ".dvc" / "plots")
    for name in (".dvcignore", ".gitignore"):
        shutil.copy2(REPO / name, work / name)
    cfg = yaml.safe_load((work / TINY).read_text())
    # A 0.2M-parameter model: a 2.5 MB checkpoint instead of 170 MB keeps push/pull quick.
    cfg["train"].update(arch="Linknet", encoder="tu-lcnet_035", decoder_channels=None)
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    git(work, "init", "-q")
    git(work, "config", "user.name", "segpipe test")
    git(work, "config", "user.email", "test@segpipe.invalid")
    git(work, "config", "commit.gpgsign", "false")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "segpipe, tiny config")
    return work


def tracked_paths(work: Path) -> list[str]:
    stage = yaml.safe_load((work / "dvc.yaml").read_text())["stages"][sdvc.STAGE]
    return [next(iter(o)) for o in stage["outs"] + stage["metrics"]]


def assert_identical(a: Path, b: Path) -> None:
    """Same files, byte for byte (Snakemake's .snakemake_timestamp is not content)."""
    if a.is_file():
        assert b.is_file() and filecmp.cmp(a, b, shallow=False), b
        return
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    ignore = {".snakemake_timestamp"}
    files_a = [p for p in files_a if p.name not in ignore]
    assert files_a == [p for p in files_b if p.name not in ignore], b
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), b / rel


@pytest.mark.slow
def test_record_push_pull_then_compare_commits(tmp_path: Path) -> None:
    # 1. Run, record (onsuccess), push to the default remote, a directory beside the checkout.
    repo = make_repo(tmp_path / "repo")
    proc = snakemake(repo, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert RECORDED in proc.stdout + proc.stderr
    assert json.loads(dvc(repo, "status", "--json")) == {}
    # Recording did not re-stamp the outputs (dvc commit --no-relink): nothing to rerun.
    assert planned_rules(repo) == {}
    paths = tracked_paths(repo)
    assert {"results/runs/ci-tiny/train/best.pt", "results/synthesize/resources.json"} <= set(paths)
    git(repo, "add", "-A")
    assert {"dvc.yaml", "dvc.lock"} <= set(git(repo, "diff", "--cached", "--name-only").split())
    git(repo, "commit", "-q", "-m", "run: 2 epochs")
    dvc(repo, "push", "--quiet")
    assert any((tmp_path / "segpipe-dvc-remote").rglob("*"))

    # 2. Fresh clone + pull: every artifact back, byte-identical, and Snakemake has nothing to do.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert not (clone / "results").exists() and not (clone / ".snakemake").exists()
    run(clone, sys.executable, "-m", "segpipe.workflow.dvc", "pull")
    for path in paths:
        assert_identical(repo / path, clone / path)
    assert planned_rules(clone) == {}

    # 3. A training change, committed and rerun in the clone: only train and what follows reruns.
    config = clone / "config" / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["train"]["epochs"] = 3
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    git(clone, "commit", "-q", "-am", "train 3 epochs")
    proc = snakemake(clone, "--cores", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    assert job_stats(out) == {"train": 1, "predict": 1, "evaluate": 2, "report": 1, "all": 1}
    assert RECORDED in out
    assert "results/runs/ci-tiny/train/best.pt" in git(clone, "diff", "dvc.lock")
    git(clone, "commit", "-q", "-am", "run: 3 epochs")

    params = json.loads(dvc(clone, "params", "diff", "HEAD~2", "HEAD", "--json"))
    assert list(params) == ["config/config.yaml"]
    assert list(params["config/config.yaml"]) == ["train.epochs"]
    assert params["config/config.yaml"]["train.epochs"].items() >= {"old": 2, "new": 3}.items()
    metrics = json.loads(dvc(clone, "metrics", "diff", "HEAD~2", "HEAD", "--json"))
    assert set(metrics) == {
        "results/runs/ci-tiny/evaluate/val/metrics.json",
        "results/runs/ci-tiny/evaluate/test/metrics.json",
    }
    assert any(v["old"] != v["new"] for m in metrics.values() for v in m.values())

    plots = json.loads(dvc(clone, "plots", "diff", "HEAD~2", "--json"))["data"]
    assert {"loss", "validation", "confusion"} <= set(plots)
    points = plots["loss"][0]["content"]["data"]["values"]
    epochs = {
        rev: sorted({int(p["epoch"]) for p in points if p["rev"] == rev})
        for rev in ("HEAD~2", "workspace")
    }
    assert epochs == {"HEAD~2": [1, 2], "workspace": [1, 2, 3]}
    cells = plots["confusion"][0]["content"]["data"]["values"]
    assert {"actual", "predicted", "count"} <= set(cells[0])
    dvc(clone, "plots", "show", "--out", str(tmp_path / "plots"), "--quiet")
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "train_loss" in html and "val_miou" in html

    # 4. A second run declared in config/config.yaml (experiments): the existing run is kept, the
    # new one trains, both are recorded; dvc shows the new run's metrics and history.
    cfg["experiments"] = {"ci-tiny": {}, "high-lr": {"train": {"lr": 0.01}}}
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    git(clone, "commit", "-q", "-am", "a second run")
    proc = snakemake(clone, "--cores", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-8000:]
    assert job_stats(out) == {
        "train": 1,
        "predict": 1,
        "evaluate": 2,
        "report": 1,
        "compare": 1,
        "all": 1,
    }
    assert RECORDED in out
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "run: two runs")
    new = {f"results/runs/high-lr/evaluate/{s}/metrics.json" for s in ("val", "test")}
    metrics = json.loads(dvc(clone, "metrics", "diff", "HEAD~2", "HEAD", "--json"))
    assert new <= set(metrics)
    assert all(v["old"] is None for path in new for v in metrics[path].values())
    shown = dvc(clone, "metrics", "show", "--json")
    for name, split in itertools.product(("ci-tiny", "high-lr"), ("val", "test")):
        assert f"results/runs/{name}/evaluate/{split}/metrics.json" in shown
    plots = json.loads(dvc(clone, "plots", "show", "--json"))["data"]
    points = plots["loss"][0]["content"]["data"]["values"]
    # DVC names each series by file (without the common prefix results/runs/) and field.
    series = {p["filename::field"].split("::")[0] for p in points}
    assert series == {"ci-tiny/train/history.csv", "high-lr/train/history.csv"}
    assert set(yaml.safe_load((clone / "dvc.yaml").read_text())["artifacts"]) == {
        "model-ci-tiny",
        "model-high-lr",
    }
