"""DVC versioning of the pipeline's artifacts; the Snakefile stays the one description of the DAG.

Snakemake decides what runs; DVC only versions what it wrote. ``dvc.yaml`` is generated from the
Snakemake DAG (``snakemake --summary`` lists every output of every job), so it cannot drift from
the Snakefile: one stage ``pipeline`` whose command is Snakemake, whose outs are all the DAG's
outputs, whose deps are the workflow code and whose params are ``config/config.yaml``, plus
top-level plots and the model artifact.

Commands (``python -m segpipe.workflow.dvc <command>``):

- ``generate [--check]`` writes ``dvc.yaml`` (or, with ``--check``, fails when it is stale);
- ``record`` regenerates ``dvc.yaml`` and stores the artifacts' hashes in ``dvc.lock`` and the
  cache (``dvc commit --no-relink``: the workspace files, and so their modification times, are
  left alone). Snakemake's ``onsuccess`` handler (rules/dvc.smk) calls it after each run;
- ``pull [-r REMOTE]`` = ``dvc pull`` + ``touch``; ``touch`` alone after ``dvc checkout``. DVC
  gives every file it writes a new modification time, in no particular order, so Snakemake would
  rerun the whole DAG. Once ``dvc status`` is clean (the workspace is exactly what ``dvc.lock``
  records, for this code and config), ``snakemake --touch --forceall`` re-stamps every output in
  DAG order and writes the Snakemake metadata later param/code changes are compared with.

``dvc repro`` runs the stage's command (Snakemake) but unprotects and relinks the outputs around
it, which re-stamps them; use ``snakemake`` (or follow ``dvc repro`` with ``touch``).
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from segpipe.workflow import paths

logger = logging.getLogger(__name__)

DVC_YAML = "dvc.yaml"
STAGE = "pipeline"
PARAMS_FILE = "config/config.yaml"
SCHEMA_FILE = "config/schema.yaml"
# What the results depend on besides the params; each is added when it exists.
CODE = ("Snakefile", "rules", "scripts", "src/segpipe", "envs", SCHEMA_FILE)
# Config sections that change where and how fast jobs run, never what they compute: a run whose
# config differs from config/config.yaml only there is still recorded.
NOT_PARAMS = frozenset({"resources"})
# Every run's outputs: results/runs/<run>/ (segpipe.workflow.experiments).
# (fnmatch: * also matches the / of a fold's results/runs/<run>/fold<i>/.)
METRICS = paths.evaluated("metrics.json", model="*", split="*")
CROSSVAL_METRICS = paths.crossval_file("metrics.json", run="*")
HISTORY = paths.train_file("history.csv", model="*")
CONFUSION_COUNTS = paths.evaluated("confusion_counts.csv", model="*", split="*")
CONFUSION_TEMPLATE = "confusion_counts"  # .dvc/plots/confusion_counts.json
MODEL = paths.train_file("best.pt", model="*")
SNAKEMAKE_CMD = "snakemake --cores all"

HEADER = """\
# GENERATED from the Snakemake DAG by `python -m segpipe.workflow.dvc generate`; do not edit.
# The Snakefile is the one description of the pipeline: Snakemake runs it, and this file only
# tells DVC what to version: every output of the DAG (outs/metrics), the code and
# config/config.yaml they depend on (deps/params), the learning-curve and confusion plots and
# the model artifact. After each successful `snakemake` run, rules/dvc.smk records the hashes in
# dvc.lock; after `dvc pull`, run `python -m segpipe.workflow.dvc touch` (or `... pull`) so Snakemake sees
# the restored files as up to date.
"""


class DvcError(RuntimeError):
    """A DVC or Snakemake step of recording or restoring failed; the message says which."""


def _env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1"}


def _run(cmd: Sequence[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, env=_env())
    if proc.returncode != 0:
        raise DvcError(f"{what} failed ({' '.join(cmd[2:])}):\n{proc.stdout}{proc.stderr}".strip())
    return proc.stdout


def _snakemake(cwd: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "snakemake", *args], cwd, "snakemake")


def _dvc(cwd: Path, *args: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd, "dvc")


# --- the DAG, as Snakemake sees it ------------------------------------------------------------


def parse_summary(text: str) -> list[dict[str, str]]:
    """Rows of ``snakemake --summary`` (output_file, date, rule, log-file(s), status, plan)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("output_file\t"):
            header = line.split("\t")
            return [
                dict(zip(header, row.split("\t"), strict=False))
                for row in lines[i + 1 :]
                if row.count("\t") == len(header) - 1
            ]
    raise DvcError(f"no table in the output of snakemake --summary:\n{text}")


def dag_summary(workdir: str | Path = ".") -> list[dict[str, str]]:
    """Every output of the default target's DAG, for config/config.yaml, with its plan."""
    return parse_summary(_snakemake(Path(workdir), "--summary", "--nolock", "--cores", "1"))


# --- dvc.yaml ---------------------------------------------------------------------------------


def build_dvc_yaml(outputs: Sequence[str], code: Sequence[str] = CODE) -> dict[str, Any]:
    """The content of dvc.yaml for a DAG whose outputs are ``outputs``.

    Metrics JSONs become stage ``metrics``; everything else, plot data included, stage
    ``outs``. All are ``persist: true`` so that ``dvc repro`` leaves them in place and Snakemake
    reruns only the jobs that are out of date. Plots are defined at the top level.

    The params are the whole of config/config.yaml: DVC selects keys with dpath, which fails on
    the integer keys of ``remap.table`` ('dict' object has no attribute 'extend'), so naming
    sections would break ``dvc params diff``. ``resources`` is therefore tracked too.
    """
    outputs = sorted(set(outputs))
    histories = [p for p in outputs if fnmatch.fnmatch(p, HISTORY)]
    models = [p for p in outputs if fnmatch.fnmatch(p, MODEL)]
    if not histories or not models:
        raise DvcError(f"the Snakemake DAG has no {HISTORY} or {MODEL}: dvc.yaml needs them")
    metrics = [
        p for p in outputs if any(fnmatch.fnmatch(p, m) for m in (METRICS, CROSSVAL_METRICS))
    ]
    confusion = [p for p in outputs if fnmatch.fnmatch(p, CONFUSION_COUNTS)]
    outs = [p for p in outputs if p not in metrics]
    stage: dict[str, Any] = {
        "cmd": SNAKEMAKE_CMD,
        "deps": list(code),
        "params": [{PARAMS_FILE: None}],  # None: every key of the file
    }
    stage["outs"] = [{p: {"persist": True}} for p in outs]
    if metrics:
        stage["metrics"] = [{p: {"persist": True}} for p in metrics]
    return {
        "stages": {STAGE: stage},
        "plots": _plots(histories, confusion),
        "artifacts": _models(models),
    }


def _plots(histories: Sequence[str], confusion: Sequence[str]) -> list[dict[str, Any]]:
    """Learning curves of every run (one line per run and column) and the confusion matrices."""
    plots: list[dict[str, Any]] = [
        {
            "loss": {
                "title": "Loss per epoch",
                "x": "epoch",
                "y": {h: ["train_loss", "val_loss"] for h in histories},
                "x_label": "epoch",
                "y_label": "loss",
            }
        },
        {
            "validation": {
                "title": "Validation mIoU and Dice per epoch",
                "x": "epoch",
                "y": {h: ["val_miou", "val_dice"] for h in histories},
                "x_label": "epoch",
                "y_label": "score",
            }
        },
    ]
    if confusion:
        plots.append(
            {
                "confusion": {
                    "title": "Confusion matrix (pixels)",
                    "template": CONFUSION_TEMPLATE,
                    "x": "predicted",
                    "y": {p: "actual" for p in confusion},
                    "x_label": "predicted class",
                    "y_label": "actual class",
                }
            }
        )
    return plots


def _models(models: Sequence[str]) -> dict[str, Any]:
    """One model artifact per trained model: ``model``, or ``model-<run>`` and
    ``model-<run>-fold<i>`` (as DVC's names allow) for several."""
    artifacts: dict[str, Any] = {}
    for i, path in enumerate(models, start=1):
        # results/runs/<run>/train/best.pt or results/runs/<run>/fold<i>/train/best.pt
        model = "/".join(Path(path).parts[2:-2])
        slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
        name = "model" if len(models) == 1 else f"model-{slug}"
        if name in artifacts:  # runs Encoder-A and encoder_a
            name = f"{name}-{i}"
        what = model.replace("/", ", ") if "/" in model else model
        artifacts[name] = {
            "path": path,
            "type": "model",
            "desc": f"Segmentation model of run {what}, best epoch by validation mIoU",
        }
    return artifacts


class _Dumper(yaml.SafeDumper):
    """Writes None as nothing, as DVC's docs write a wholly tracked params file (``- file:``)."""


_Dumper.add_representer(
    type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "")
)


def render_dvc_yaml(content: Mapping[str, Any]) -> str:
    body = yaml.dump(dict(content), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return HEADER + body


def expected_dvc_yaml(workdir: str | Path = ".", summary: list[dict] | None = None) -> str:
    """dvc.yaml as the Snakefile and config/config.yaml in ``workdir`` define it."""
    root = Path(workdir)
    rows = dag_summary(root) if summary is None else summary
    code = [c for c in CODE if (root / c).exists()]
    return render_dvc_yaml(build_dvc_yaml([r["output_file"] for r in rows], code))


def generate(workdir: str | Path = ".", *, check: bool = False, summary=None) -> bool:
    """Write dvc.yaml if it differs from what the DAG defines; True if it did (or would)."""
    path = Path(workdir) / DVC_YAML
    text = expected_dvc_yaml(workdir, summary)
    current = path.read_text(encoding="utf-8") if path.exists() else None
    if current == text:
        return False
    if not check:
        path.write_text(text, encoding="utf-8")
        logger.info("wrote %s from the Snakemake DAG", path)
    return True


# --- recording a run --------------------------------------------------------------------------


def config_differs(resolved: Mapping[str, Any], workdir: str | Path = ".") -> list[str]:
    """Top-level config keys (but NOT_PARAMS) where a run's config differs from config/config.yaml.

    ``resolved`` is the run's validated config (command-line --configfile/--config merged in);
    config/config.yaml is validated the same way, so filled-in defaults compare equal.
    """
    from segpipe.workflow.config import load_schema, validate_config

    root = Path(workdir)
    with open(root / PARAMS_FILE, encoding="utf-8") as fh:
        own = validate_config(yaml.safe_load(fh) or {}, load_schema(root / SCHEMA_FILE))
    keys = (set(resolved) | set(own)) - NOT_PARAMS
    return sorted(k for k in keys if resolved.get(k) != own.get(k))


def why_not_record(
    workdir: str | Path = ".", config: Mapping[str, Any] | None = None
) -> str | None:
    """Why a run in ``workdir`` must not be recorded in dvc.lock, or None when it may be."""
    root = Path(workdir)
    if not (root / ".dvc").is_dir():
        return f"{root.resolve()} is not a DVC repository (no .dvc/)"
    if os.environ.get("DVC_STAGE"):
        return "running as a DVC stage: `dvc repro` records dvc.lock itself"
    if not (root / PARAMS_FILE).is_file():
        return f"no {PARAMS_FILE}"
    if config is not None:
        differs = config_differs(config, root)
        if differs:
            return (
                f"this run's config differs from {PARAMS_FILE} in {', '.join(differs)} "
                "(--configfile/--config), and dvc.lock pairs the outputs with that file's params"
            )
    return None


def record(workdir: str | Path = ".") -> None:
    """Regenerate dvc.yaml, check that every output is up to date, then ``dvc commit`` them."""
    root = Path(workdir)
    rows = dag_summary(root)
    pending = sorted({r["output_file"] for r in rows if r.get("plan") != "no update"})
    if pending:
        raise DvcError(
            "not recording: Snakemake would still update "
            f"{', '.join(pending[:5])}{' ...' if len(pending) > 5 else ''}; run `snakemake` first"
        )
    if generate(root, summary=rows):
        logger.info("dvc.yaml changed with the DAG's outputs")
    _dvc(root, "commit", "--force", "--no-relink")  # not --quiet: it hides DVC's errors
    logger.info("recorded the artifacts' hashes in dvc.lock (git diff dvc.lock shows the change)")


def record_after_run(
    config: Mapping[str, Any],
    *,
    touch: bool = False,
    workdir: str | Path = ".",
    log: logging.Logger | logging.LoggerAdapter | None = None,
) -> bool:
    """The ``onsuccess`` handler: record the run in dvc.lock, or log why not. Never raises.

    Returns True when dvc.lock was written.
    """
    log = log or logger
    reason = "a --touch run changes no content" if touch else why_not_record(workdir, config)
    if reason:
        log.info(f"segpipe.workflow.dvc: not recording in dvc.lock: {reason}")
        return False
    try:
        record(workdir)
    except Exception as exc:  # the pipeline succeeded; say what to do instead of failing it
        log.warning(
            f"segpipe.workflow.dvc: could not record in dvc.lock: {exc}\n"
            "Fix that, then run `python -m segpipe.workflow.dvc record`."
        )
        return False
    log.info("segpipe.workflow.dvc: recorded the artifacts' hashes in dvc.lock")
    return True


# --- restoring after dvc pull / checkout ------------------------------------------------------


def touch(workdir: str | Path = ".") -> None:
    """Mark the artifacts DVC restored as up to date for Snakemake (``snakemake --touch``).

    Only when ``dvc status`` is clean: then the workspace holds exactly what dvc.lock records,
    produced by this code and config/config.yaml, and re-stamping it in DAG order is honest.
    """
    root = Path(workdir)
    status = _dvc(root, "status", "--json").strip()
    if status not in ("", "{}"):
        raise DvcError(
            "not touching: the workspace differs from dvc.lock (dvc status), so Snakemake "
            f"must decide what to rerun:\n{status}"
        )
    # --forceall: every job, not just those whose mtimes look stale, so the whole DAG is re-stamped
    # in order and each job gets Snakemake metadata (params/code), which later reruns compare with.
    _snakemake(root, "--touch", "--forceall", "--cores", "1", "--quiet")
    pending = sorted({r["output_file"] for r in dag_summary(root) if r.get("plan") != "no update"})
    if pending:
        raise DvcError(f"after --touch, Snakemake still plans to update {', '.join(pending)}")
    logger.info("restored outputs are up to date for Snakemake (snakemake -n: nothing to be done)")


def pull(workdir: str | Path = ".", remote: str | None = None, jobs: int | None = None) -> None:
    """``dvc pull`` (from ``remote``, default the configured one), then :func:`touch`. Not
    ``--quiet``: it would silence DVC's own error too, and the output is kept only on failure."""
    root = Path(workdir)
    if not (root / ".dvc").is_dir():
        raise DvcError(f"not pulling: {root.resolve()} is not a DVC repository (no .dvc/)")
    args = ["pull"]
    if remote:
        args += ["--remote", remote]
    if jobs:
        args += ["--jobs", str(jobs)]
    _dvc(root, *args)
    touch(workdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segpipe.workflow.dvc", description=__doc__.split("\n")[0]
    )
    parser.add_argument("-C", "--directory", default=".", help="the workflow directory")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write dvc.yaml from the Snakemake DAG")
    gen.add_argument("--check", action="store_true", help="exit 1 if dvc.yaml is not current")
    sub.add_parser("record", help="record the outputs' hashes in dvc.lock (dvc commit)")
    pl = sub.add_parser("pull", help="dvc pull, then mark the outputs up to date for Snakemake")
    pl.add_argument("-r", "--remote", help="DVC remote (default: core.remote)")
    pl.add_argument("-j", "--jobs", type=int, help="parallel transfers")
    sub.add_parser("touch", help="after dvc checkout/pull: mark the outputs up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "generate":
            changed = generate(args.directory, check=args.check)
            if args.check and changed:
                print(f"{DVC_YAML} is not current: run `python -m segpipe.workflow.dvc generate`")
                return 1
        elif args.command == "record":
            reason = why_not_record(args.directory)
            if reason:
                raise DvcError(f"not recording: {reason}")
            record(args.directory)
        elif args.command == "pull":
            pull(args.directory, args.remote, args.jobs)
        else:
            touch(args.directory)
    except DvcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
