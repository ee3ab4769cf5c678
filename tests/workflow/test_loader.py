"""segpipe.workflow.loader: the config loaded once for the rules, every check before any job,
and the DAG process free of torch."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from segpipe.workflow.config import ConfigError, load_schema
from segpipe.workflow.loader import load_pipeline, one_of

from helpers.repo import BIN, REPO

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())


def load(overrides: dict | None = None, **sections) -> object:
    cfg = {**copy.deepcopy(TINY), **sections}
    return load_pipeline(cfg, overrides or {}, SCHEMA, check_models=False, base=None)


def test_one_run_its_model_split_and_no_search() -> None:
    pipeline = load()
    assert list(pipeline.runs) == ["ci-tiny"] and list(pipeline.models) == ["ci-tiny"]
    assert pipeline.search is None and pipeline.budgets == [] and pipeline.brackets == []
    assert not pipeline.compare and pipeline.infer_images == [] and pipeline.source == "synthetic"
    assert pipeline.config["predict"]["batch_size"] == 8  # validated, defaults filled in
    constraints = pipeline.wildcard_constraints()
    assert constraints["run"] == "ci\\-tiny" and constraints["rung"] == "(?!)"
    assert pipeline.layout.checkpoints("ci-tiny") == ["results/runs/ci-tiny/train/best.pt"]


def test_experiments_are_compared_and_folds_are_models() -> None:
    pipeline = load(experiments={"a": {}, "b": {"split": {"folds": 2}}})
    assert pipeline.compare
    assert list(pipeline.models) == ["a", "b/fold0", "b/fold1"]
    assert set(pipeline.splittings) == {"base"}


def test_a_search_is_parsed_once_with_its_rungs_and_brackets() -> None:
    search = {"min_epochs": 2, "max_epochs": 8, "eta": 2}
    pipeline = load(experiments={"a": {}, "b": {"train": {"lr": 0.01}}}, search=search)
    assert pipeline.search is not None and not pipeline.compare
    assert pipeline.budgets == [2, 4, 8] and pipeline.brackets[0] == [0, 1, 2]
    assert pipeline.wildcard_constraints()["rung"] == "0|1|2"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"train": {"lr": -1}}, "train.lr"),
        ({"infer": {"images": "/no/such/folder"}}, "infer.images"),
        ({"search": {"min_epochs": 2, "max_epochs": 8, "eta": 2}}, "search"),
    ],
)
def test_a_wrong_config_fails_naming_the_option(sections: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load(**sections)


def test_an_empty_infer_folder_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="infer.images': folder .* holds no files"):
        load(infer={"images": str(tmp_path)})
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    assert load(infer={"images": str(tmp_path)}).infer_images == [str(tmp_path / "a.png")]


def test_the_config_given_is_not_changed() -> None:
    cfg = copy.deepcopy(TINY)
    load_pipeline(cfg, {}, SCHEMA, check_models=False, base=None)
    assert cfg == TINY


def test_one_of_matches_exactly_the_names() -> None:
    assert one_of(["a.b", "c"]) == "a\\.b|c" and one_of([]) == "(?!)"


# The DAG process: Snakemake builds the DAG (a dry run) in this process.
DRY_RUN = """
import sys
from snakemake.cli import main
sys.argv = ["snakemake", "-n", "--cores", "1", "--configfile", "config/test.yaml",
            "--config", "infer={'images': %r}"]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
print("torch imported" if "torch" in sys.modules else "no torch")
"""


@pytest.mark.slow
def test_the_dag_process_imports_no_torch_with_infer_images(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"not an image, listed all the same")
    proc = subprocess.run(
        [str(BIN / "python"), "-c", DRY_RUN % str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule infer:" in proc.stdout + proc.stderr  # infer.images was set: its job is planned
    assert proc.stdout.strip().splitlines()[-1] == "no torch", proc.stdout[-2000:]


def test_the_rules_keep_only_snakemake_glue() -> None:
    common = (REPO / "rules" / "common.smk").read_text()
    assert len(common.splitlines()) <= 150
    assert "load_pipeline(" in common and "validate_config" not in common
    assert "segpipe.inference" not in common  # listing infer.images needs no torch
