"""k-fold cross-validation: the folds, fold training on shared arrays, the fold ensemble, the
cross-validation summary, the DAG and what a change reruns."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from segpipe.data.arrays import ArrayDataset
from segpipe.data.preprocess import select_rows
from segpipe.data.split import FoldError, fold_assignment, write_fold
from segpipe.evaluation.crossval import mean_std, out_of_fold, write_crossval
from segpipe.inference.predict_splits import PredictOptions, predict_split
from segpipe.models.checkpoints import load_checkpoint, model_from_checkpoint
from segpipe.models.device import prepare_batch
from segpipe.workflow.config import ConfigError, load_schema, validate_config
from segpipe.workflow.experiments import expand_runs

from helpers.repo import REPO, copy_workflow, planned_jobs, snakemake
from helpers.train import CLASSES, tiny_splits
from helpers.train import train as train_tiny

SCHEMA = load_schema(REPO / "config" / "schema.yaml")
TINY = yaml.safe_load((REPO / "config" / "test.yaml").read_text())


def validate(cfg: dict) -> dict:
    return validate_config(cfg, SCHEMA, check_models=False)


def pool(n: int, groups: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {"id": [f"img{i:03d}" for i in range(n)], "group": [f"g{i % groups}" for i in range(n)]}
    )


# --- the folds ------------------------------------------------------------------------------


def test_folds_partition_the_pool_evenly_per_group_and_are_seeded() -> None:
    frame = pool(31, groups=3)
    folds = fold_assignment(frame, folds=5, seed=42)
    assert sorted(folds.index) == sorted(frame["id"])  # every image in exactly one fold
    sizes = folds.value_counts()
    assert sorted(sizes.index) == [0, 1, 2, 3, 4] and sizes.max() - sizes.min() <= 1
    per_group = pd.crosstab(frame.set_index("id")["group"], folds)
    assert (per_group.max(axis=1) - per_group.min(axis=1)).max() <= 1  # stratified
    shuffled = frame.sample(frac=1, random_state=0)
    assert fold_assignment(shuffled, folds=5, seed=42).equals(folds)  # order of rows irrelevant
    assert not fold_assignment(frame, folds=5, seed=7).equals(folds)


def test_more_folds_than_pool_images_is_a_clear_error() -> None:
    with pytest.raises(FoldError, match=r"'split.folds': 6 folds, but the train\+val pool"):
        fold_assignment(pool(5), folds=6, seed=0)


def write_index_and_pool(root: Path, n: int = 12) -> tuple[Path, list[Path]]:
    """A remap index and two pool manifests (train, val) of ``n`` images; class 2 ('border')
    only in the first image."""
    frame = pool(n, groups=2).assign(
        image=lambda f: "images/" + f["id"] + ".png",
        mask=lambda f: "masks/" + f["id"] + ".png",
        height=10,
        width=12,
    )
    index = frame.assign(classes=["0 1 2"] + ["0 1"] * (n - 1))
    index.to_csv(root / "index.csv", index=False)
    parts = [root / "train.csv", root / "val.csv"]
    frame.iloc[: n - 3].to_csv(parts[0], index=False)
    frame.iloc[n - 3 :].to_csv(parts[1], index=False)
    return root / "index.csv", parts


def test_fold_manifests_are_byte_identical_and_warn_of_a_class_a_val_part_lacks(
    tmp_path: Path, caplog
) -> None:
    index, parts = write_index_and_pool(tmp_path)
    written = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        out.mkdir()
        for fold in range(3):
            names = {s: out / f"fold{fold}_{s}.csv" for s in ("train", "val")}
            with caplog.at_level(logging.WARNING, logger="segpipe.data.split"):
                write_fold(
                    str(index),
                    [str(p) for p in parts],
                    fold,
                    {k: str(v) for k, v in names.items()},
                    str(out / f"fold{fold}_classes.csv"),
                    class_names=["pet", "background", "border"],
                    folds=3,
                    seed=42,
                )
        written.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert written[0] == written[1]
    vals = [pd.read_csv(tmp_path / "a" / f"fold{i}_val.csv") for i in range(3)]
    trains = [pd.read_csv(tmp_path / "a" / f"fold{i}_train.csv") for i in range(3)]
    assert sorted(pd.concat(vals)["id"]) == [f"img{i:03d}" for i in range(12)]
    for val, train in zip(vals, trains, strict=True):
        assert set(val["id"]).isdisjoint(train["id"]) and len(val) + len(train) == 12
    # 'border' is in one image: two folds' val parts lack it, each named in a warning.
    lacking = [i for i, val in enumerate(vals) if "img000" not in set(val["id"])]
    for fold in lacking:
        assert f"class 'border' (id 2) appears in no mask of the val split of fold {fold}" in (
            caplog.text
        )


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"split": {"folds": 1}}, "config option 'split.folds': 1 is less than the minimum"),
        ({"split": {"folds": "three"}}, "config option 'split.folds'"),
        ({"predict": {"ensemble": "folds"}}, "config option 'predict.ensemble': folds averages"),
        ({"predict": {"ensemble": "mean"}, "split": {"folds": 2}}, "'predict.ensemble'"),
    ],
)
def test_bad_fold_options_fail_naming_the_option(sections: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({**TINY, **sections})
    assert message in str(err.value)


def test_runs_with_and_without_folds_share_the_split_and_name_their_models() -> None:
    raw = {
        **TINY,
        "experiments": {
            "single": {},
            "cv": {"split": {"folds": 3}, "predict": {"ensemble": "folds"}},
            "cv-only": {"split": {"folds": 2}},
        },
    }
    single, cv, cv_only = expand_runs(raw, validate(raw), validate)
    assert single.splitting == cv.splitting == cv_only.splitting == "base"
    assert [m.name for m in single.models] == ["single"]
    assert [m.name for m in cv.models] == ["cv/fold0", "cv/fold1", "cv/fold2", "cv/ensemble"]
    assert cv.models[-1].members == ("cv/fold0", "cv/fold1", "cv/fold2")
    assert cv.models[-1].splits == ("test",) and cv.models[0].splits == ("val", "test")
    assert cv.primary.name == "cv/ensemble" and cv_only.primary.name == "cv-only/fold0"


# --- data, ensemble and summary -------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    return tiny_splits(tmp_path_factory.mktemp("data"), n_train=4)


def test_a_fold_reads_its_rows_from_the_split_arrays_in_manifest_order(data, tmp_path) -> None:
    manifests = [data[s]["manifest"] for s in ("train", "val")]
    arrays = [data[s]["array"] for s in ("train", "val")]
    wanted = pd.concat([pd.read_csv(m) for m in manifests]).iloc[[6, 1, 3, 4]]
    wanted.to_csv(tmp_path / "fold.csv", index=False)
    rows = select_rows(tmp_path / "fold.csv", arrays, manifests)
    assert rows.rows == ((1, 2), (0, 1), (0, 3), (1, 0))
    got = ArrayDataset(rows).__getitems__([0, 1, 2, 3]).samples.numpy()
    train, val = (np.load(a) for a in arrays)
    assert np.array_equal(got, np.stack([val[2], train[1], train[3], val[0]]))
    wanted.assign(id="nowhere").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: 4 images are in none of the arrays"):
        select_rows(tmp_path / "bad.csv", arrays, manifests)


def test_the_ensemble_mask_is_the_argmax_of_the_mean_probabilities(data, tmp_path) -> None:
    checkpoints = []
    for seed in (1, 2):
        _, paths = train_tiny(data, tmp_path / f"fold{seed}", seed=seed, epochs=1)
        checkpoints.append(paths["best_path"])
    test = data["test"]
    predict_split(
        checkpoints,
        test["manifest"],
        test["array"],
        tmp_path / "ensemble",
        PredictOptions(device="cpu"),
    )
    # Independently: each model's softmax, averaged, resized to the image, argmax.
    models = [model_from_checkpoint(load_checkpoint(c)).eval() for c in checkpoints]
    batch = ArrayDataset(test["array"]).__getitems__([0, 1, 2, 3])
    x, _ = prepare_batch(batch, torch.device("cpu"), channels_last=False)
    with torch.no_grad():
        probabilities = [m(x).softmax(1) for m in models]
    mean = torch.stack(probabilities).mean(0)
    differs_from_one_model = False
    for i, row in pd.read_csv(test["manifest"]).iterrows():
        size = (int(row["height"]), int(row["width"]))
        expected = F.interpolate(mean[i : i + 1], size=size, mode="bilinear").argmax(1)[0]
        first = F.interpolate(probabilities[0][i : i + 1], size=size, mode="bilinear").argmax(1)
        got = np.asarray(Image.open(tmp_path / "ensemble" / "masks" / f"{row['id']}.png"))
        assert np.array_equal(got, expected.numpy().astype(np.uint8)), row["id"]
        differs_from_one_model |= not torch.equal(first[0], expected)
    assert differs_from_one_model  # the check would catch an ensemble of one model


def test_an_ensemble_of_models_of_other_classes_is_refused(data, tmp_path) -> None:
    _, a = train_tiny(data, tmp_path / "a", epochs=1)
    ckpt = load_checkpoint(a["best_path"])
    ckpt["config"]["classes"] = [*CLASSES[:-1], "other"]
    torch.save(ckpt, tmp_path / "other.pt")
    test = data["test"]
    with pytest.raises(ValueError, match=r"other.pt: classes .* differ"):
        predict_split(
            [a["best_path"], tmp_path / "other.pt"], test["manifest"], test["array"], tmp_path / "o"
        )
    assert not (tmp_path / "o").exists()


def test_mean_and_sample_std_over_folds() -> None:
    assert mean_std([0.5, 0.7, None, 0.6]) == pytest.approx({"mean": 0.6, "std": 0.1})
    assert mean_std([0.5]) == {"mean": 0.5, "std": None}
    assert mean_std([None]) == {"mean": None, "std": None}


def test_out_of_fold_scores_refuse_an_image_in_two_folds(tmp_path: Path) -> None:
    for fold, ids in enumerate((["a", "b"], ["c", "a"])):
        pd.DataFrame({"id": ids, "mean_iou": [0.5, 0.6]}).to_csv(tmp_path / f"{fold}.csv")
    with pytest.raises(ValueError, match="image 'a' is in the validation part of two folds"):
        out_of_fold([tmp_path / "0.csv", tmp_path / "1.csv"])


def test_crossval_summary_of_two_folds_and_the_ensemble(tmp_path: Path) -> None:
    def metrics(name: str, miou: float) -> Path:
        path = tmp_path / f"{name}.json"
        per_class = {"pet": {"iou": miou, "dice": miou}, "background": {"iou": 1.0, "dice": 1.0}}
        path.write_text(json.dumps({"mean_iou": miou, "per_class": per_class}))
        return path

    for fold, ids in enumerate((["a", "b"], ["c"])):
        pd.DataFrame({"id": ids, "mean_iou": [0.1] * len(ids)}).to_csv(
            tmp_path / f"img{fold}.csv", index=False
        )
    summary = write_crossval(
        tmp_path / "cv.json",
        tmp_path / "folds.csv",
        tmp_path / "oof.csv",
        val_metrics=[metrics("v0", 0.4), metrics("v1", 0.6)],
        test_metrics=[metrics("t0", 0.3), metrics("t1", 0.5)],
        val_per_image=[tmp_path / "img0.csv", tmp_path / "img1.csv"],
        class_names=["pet", "background"],
        ensemble_test_metrics=metrics("e", 0.45),
    )
    assert summary["folds"] == 2
    assert summary["val"]["mean_iou"] == pytest.approx({"mean": 0.5, "std": 0.1414213562})
    assert summary["test"]["mean_iou"]["mean"] == pytest.approx(0.4)
    assert summary["val"]["per_class_iou"]["pet"]["mean"] == pytest.approx(0.5)
    assert summary["ensemble"]["test"]["mean_iou"] == 0.45
    folds = pd.read_csv(tmp_path / "folds.csv")
    assert folds["model"].tolist() == ["fold0", "fold1", "ensemble"]
    assert pd.isna(folds.loc[2, "val_mean_iou"]) and folds.loc[2, "test_mean_iou"] == 0.45
    assert pd.read_csv(tmp_path / "oof.csv")[["id", "fold"]].values.tolist() == [
        ["a", 0],
        ["b", 0],
        ["c", 1],
    ]


# --- the DAG --------------------------------------------------------------------------------


def workflow(tmp_path: Path, runs: dict) -> tuple[Path, tuple[str, ...]]:
    work = copy_workflow(tmp_path)
    (work / "config" / "runs.yaml").write_text(yaml.safe_dump(runs))
    return work, ("--configfile", "config/test.yaml", "config/runs.yaml")


@pytest.mark.slow
def test_k_folds_of_n_runs_are_k_x_n_independent_train_jobs(tmp_path: Path) -> None:
    runs = {
        "split": {"folds": 3},
        "predict": {"ensemble": "folds"},
        "grid": {"train.loss": ["ce", "ce+dice"]},
        "experiments": {"single": {"split": {"folds": None}, "predict": {"ensemble": None}}},
    }
    work, args = workflow(tmp_path, runs)
    jobs = planned_jobs(work, *args)
    counts = Counter(rule for rule, _ in jobs)
    assert counts == {
        "synthesize": 1,
        "download": 1,
        "remap": 1,
        "split": 1,  # shared by the runs with and without folds
        "folds": 3,
        "preprocess": 3,  # the folds are rows of the split's arrays
        "train": 7,  # 3 folds x 2 runs, and the single run
        "predict": 2 * (3 + 1) + 1,  # per fold, per ensemble, the single run
        "evaluate": 2 * (3 * 2 + 1) + 2,
        "crossval": 2,
        "report": 3,
        "compare": 1,
    }
    trained = sorted(w["model"] for rule, w in jobs if rule == "train")
    assert trained == [
        *(f"loss-ce+dice/fold{i}" for i in range(3)),
        *(f"loss-ce/fold{i}" for i in range(3)),
        "single",
    ]
    # No train job waits for another: on Slurm all of them are submitted at once.
    proc = snakemake(work, *args, "--dag")
    assert proc.returncode == 0, proc.stderr
    nodes = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)', proc.stdout, re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", proc.stdout, re.M)
    assert Counter(nodes.values())["train"] == 7
    assert not [(a, b) for a, b in edges if nodes[a] == "train" and nodes[b] == "train"]


# --- end to end: a 2-fold run with its ensemble beside a plain run, and what a change reruns ---

CV = {"split": {"folds": 2}, "predict": {"ensemble": "folds"}}
RUNS = {"experiments": {"cv": CV, "single": {}}}


def with_cv(**cv) -> dict:
    return {"experiments": {"cv": cv, "single": {}}}


@pytest.fixture(scope="module")
def two_folds(tmp_path_factory) -> tuple[Path, tuple[str, ...]]:
    work, args = workflow(tmp_path_factory.mktemp("folds"), RUNS)
    proc = snakemake(work, *args, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    return work, args


@pytest.mark.slow
def test_two_folds_and_their_ensemble_are_trained_evaluated_and_summarised(two_folds) -> None:
    work, _ = two_folds
    run = work / "results" / "runs" / "cv"
    assert sorted(p.name for p in run.iterdir()) == [
        "crossval",
        "ensemble",
        "fold0",
        "fold1",
        "report",
    ]
    split = work / "results" / "split" / "base"
    pool = pd.concat(pd.read_csv(split / f"{s}.csv") for s in ("train", "val"))
    vals = [pd.read_csv(work / "results/folds/base/k2" / f"fold{i}" / "val.csv") for i in (0, 1)]
    assert sorted(pd.concat(vals)["id"]) == sorted(pool["id"])
    test_ids = set(pd.read_csv(split / "test.csv")["id"])
    assert test_ids.isdisjoint(pool["id"])
    ensemble = yaml.safe_load((run / "ensemble/evaluate/test/metrics.json").read_text())
    assert ensemble["n_images"] == len(test_ids) and 0 <= ensemble["mean_iou"] <= 1
    assert not (run / "ensemble" / "train").exists()
    folds_val = [
        yaml.safe_load((run / f"fold{i}/evaluate/val/metrics.json").read_text()) for i in (0, 1)
    ]
    cv_mean = np.mean([m["mean_iou"] for m in folds_val])
    summary = yaml.safe_load((run / "crossval/metrics.json").read_text())
    assert summary["val"]["mean_iou"]["mean"] == pytest.approx(cv_mean)
    assert summary["ensemble"]["test"]["mean_iou"] == pytest.approx(ensemble["mean_iou"])
    oof = pd.read_csv(run / "crossval/per_image.csv")
    assert sorted(oof["id"]) == sorted(pool["id"])
    html = (run / "report" / "report.html").read_text()
    assert "Cross-validation" in html and "fold ensemble" in html


@pytest.mark.slow
def test_the_leaderboard_ranks_the_cv_run_by_its_mean_and_lists_its_folds(two_folds) -> None:
    work, _ = two_folds
    board = pd.read_csv(work / "results" / "compare" / "leaderboard.csv", dtype={"model": str})
    cv = board[board["run"] == "cv"]
    assert cv["model"].fillna("").tolist() == ["cv", "fold0", "fold1", "ensemble"]
    summary = yaml.safe_load((work / "results/runs/cv/crossval/metrics.json").read_text())
    assert cv["val_miou"].iloc[0] == pytest.approx(summary["val"]["mean_iou"]["mean"])
    ensemble = yaml.safe_load(
        (work / "results/runs/cv/ensemble/evaluate/test/metrics.json").read_text()
    )
    assert cv["test_miou"].iloc[3] == pytest.approx(ensemble["mean_iou"])
    ranked = board[board["rank"].notna()]
    assert ranked["run"].tolist() == ranked.sort_values("val_miou", ascending=False)["run"].tolist()
    single = yaml.safe_load((work / "results/runs/single/evaluate/val/metrics.json").read_text())
    assert board.loc[board["run"] == "single", "val_miou"].item() == pytest.approx(
        single["mean_iou"]
    )


def rules_planned(work: Path, args: tuple[str, ...], runs: dict) -> dict[str, set[str]]:
    (work / "config" / "runs.yaml").write_text(yaml.safe_dump(runs))
    planned: dict[str, set[str]] = {}
    for rule, wildcards in planned_jobs(work, *args):
        planned.setdefault(rule, set()).add(wildcards.get("model", wildcards.get("run", "")))
    return planned


@pytest.mark.slow
def test_changing_the_folds_reruns_the_folds_never_the_data_or_test_arrays(two_folds) -> None:
    work, args = two_folds
    assert rules_planned(work, args, RUNS) == {}
    planned = rules_planned(work, args, with_cv(**{**CV, "split": {"folds": 3}}))
    assert set(planned) == {
        "folds",
        "train",
        "predict",
        "evaluate",
        "crossval",
        "report",
        "compare",
    }
    # A new partition: every fold's manifests change, so every fold trains again; the plain
    # run is left alone.
    assert planned["train"] == {"cv/fold0", "cv/fold1", "cv/fold2"}
    assert planned["report"] == {"cv"}
    # Dropping the ensemble keeps every checkpoint and prediction of the folds.
    assert rules_planned(work, args, with_cv(split={"folds": 2})) == {
        "crossval": {"cv"},
        "report": {"cv"},
        "compare": {""},
    }
    assert rules_planned(work, args, RUNS) == {}


@pytest.mark.slow
def test_more_folds_than_images_fail_in_one_line(two_folds) -> None:
    work, args = two_folds
    (work / "config" / "runs.yaml").write_text(yaml.safe_dump(with_cv(split={"folds": 40})))
    target = "results/folds/base/k40/fold0/val.csv"
    proc = snakemake(work, *args, "--cores", "1", target)
    assert proc.returncode != 0
    assert "'split.folds': 40 folds, but the train+val pool holds only 16 images" in proc.stderr
    log = (work / "logs" / "folds" / "base" / "k40" / "fold0.log").read_text()
    assert "FoldError" in log and "Traceback" not in log
    assert not (work / target).exists()
    (work / "config" / "runs.yaml").write_text(yaml.safe_dump(RUNS))
