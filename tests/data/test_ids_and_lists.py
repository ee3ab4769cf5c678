"""Ids that look like missing values (NA, nan, None, null...) stay strings through every table,
and split lists saved by ordinary editors (BOM, CRLF, trailing spaces, ids with spaces) mean
what they say: a listed id that matches no pair stops the remap step."""

from __future__ import annotations

from html import escape as html_escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from segpipe.data.dataset_layouts import SplitListError, index_dataset, list_entries
from segpipe.data.preprocess import preprocess_split
from segpipe.data.remap import remap_dataset
from segpipe.data.split import read_manifest, write_split
from segpipe.data.verify import verify_dataset
from segpipe.evaluation.evaluate import evaluate_split
from segpipe.inference.predict_splits import PredictOptions, predict_split
from segpipe.io import read_table, write_csv
from segpipe.reporting.run_report import ReportInputs, build_report
from segpipe.training.train import HISTORY_COLUMNS

from helpers.checkpoints import untrained_checkpoint
from helpers.repo import REPO, copy_workflow, snakemake

# Strings pandas reads as NaN by default (those that can be file names), a blank-looking id,
# and ones it would read as numbers.
NA_LIKE = ["NA", "nan", "None", "null", "NULL", "NaN", "-nan", "#NA", "<NA>", "1.#IND", " "]
ORDINARY = ["007", "a", "b", "c", "d", "e"]
IDS = sorted(NA_LIKE + ORDINARY)
TABLE = {1: 0, 2: 1, 3: 2}  # config/test.yaml's trimap table
SIZE = 16


def make_folder(root: Path, ids: list[str]) -> Path:
    """images/<id>.png + masks/<id>.png: random RGB, a trimap-like mask with values 1, 2, 3."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in ids:
        rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"{i}.png")
        mask = np.full((SIZE, SIZE), 2, dtype=np.uint8)
        mask[4:12, 4:12] = 1
        mask[4, 4:12] = 3
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    return root


def remap(root: Path, out: Path, **kwargs) -> pd.DataFrame:
    return remap_dataset(
        root,
        out / "masks",
        out / "index.csv",
        out / "quarantine.csv",
        layout=kwargs.pop("layout", "folder"),
        table=TABLE,
        threads=1,
        **kwargs,
    )


# --------------------------------------------------------------------------- ids


def test_read_table_keeps_na_like_text_and_empty_numbers(tmp_path):
    ids = [*NA_LIKE, "N/A", "#N/A", "n/a", ""]
    path = tmp_path / "t.csv"
    write_csv(path, pd.DataFrame({"id": ids, "score": [0.5] * (len(ids) - 1) + [np.nan]}))
    table = read_table(path)
    assert table["id"].tolist() == ids
    assert table["score"].dtype == float and np.isnan(table["score"].iloc[-1])


def test_na_like_ids_survive_index_split_predict_evaluate_and_report(tmp_path):
    """index -> split manifests -> array -> predictions named by id -> per-image metrics ->
    report, without Snakemake."""
    data = make_folder(tmp_path / "data", IDS)
    out = tmp_path / "out"
    remap(data, out)
    index = read_table(out / "index.csv")
    assert index["id"].tolist() == IDS
    assert [Path(p).stem for p in index["mask"]] == IDS

    manifests = {name: out / f"{name}.csv" for name in ("train", "val", "test")}
    classes = ["pet", "background", "border"]
    write_split(
        str(out / "index.csv"),
        {k: str(v) for k, v in manifests.items()},
        str(out / "classes.csv"),
        class_names=classes,
        seed=0,
        val_fraction=0.2,
        test_fraction=0.4,
    )
    parts = {name: read_manifest(path)["id"].tolist() for name, path in manifests.items()}
    assert sorted(sum(parts.values(), [])) == IDS  # each id in exactly one split, none empty
    test = parts["test"]
    assert set(test) & set(NA_LIKE)

    array = preprocess_split(manifests["test"], out / "test.npy", image_size=32)
    checkpoint = untrained_checkpoint(out / "model.pt", classes)
    threads = torch.get_num_threads()
    predict_split(
        checkpoint,
        manifests["test"],
        array,
        out / "predictions",
        PredictOptions(threads=1, device="cpu"),
    )
    torch.set_num_threads(threads)
    assert sorted(p.stem for p in (out / "predictions" / "masks").iterdir()) == test

    evaluate = out / "evaluate"
    evaluate_split(
        manifests["test"],
        out / "predictions",
        metrics_json=evaluate / "metrics.json",
        per_class_csv=evaluate / "per_class.csv",
        confusion_csv=evaluate / "confusion.csv",
        confusion_normalized_csv=evaluate / "confusion_normalized.csv",
        per_image_csv=evaluate / "per_image.csv",
        classes=classes,
    )
    assert read_table(evaluate / "per_image.csv")["id"].tolist() == test

    history = pd.DataFrame([dict.fromkeys(HISTORY_COLUMNS, 1.0)], columns=HISTORY_COLUMNS)
    write_csv(out / "history.csv", history)
    build_report(
        out / "report.html",
        out / "figures",
        ReportInputs(
            metrics_json=evaluate / "metrics.json",
            per_class_csv=evaluate / "per_class.csv",
            confusion_csv=evaluate / "confusion.csv",
            per_image_csv=evaluate / "per_image.csv",
            history_csv=out / "history.csv",
            manifest_csv=manifests["test"],
            predictions_dir=out / "predictions",
            class_names=classes,
            config={},
            benchmarks={},
            gallery_size=len(test),
            quarantine_csv=out / "quarantine.csv",
        ),
    )
    html = (out / "report.html").read_text()
    assert all(html_escape(i) in html for i in test if i.strip())


@pytest.mark.slow
def test_pipeline_with_na_like_ids(tmp_path):
    """Snakemake's remap and split rules on a folder dataset whose ids look like missing values
    (the steps after them read the manifests as the test above does)."""
    work = copy_workflow(tmp_path / "work")
    ids = ["NA", "nan", "None", "null", "NaN", " ", "a", "b", "c", "d", "e", "f"]
    make_folder(tmp_path / "data", ids)
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["dataset"] = {"source": "folder", "root": str(tmp_path / "data"), "name": "na ids"}
    cfg["split"].update(val_fraction=0.25, test_fraction=0.35)
    (work / "config" / "na.yaml").write_text(yaml.safe_dump(cfg))
    splits = ("train", "val", "test")
    targets = [f"results/split/base/{s}.csv" for s in splits]
    proc = snakemake(work, "--configfile", "config/na.yaml", "--cores", "2", *targets, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = work / "results"
    assert read_table(results / "remap" / "index.csv")["id"].tolist() == sorted(ids)
    split = {s: read_table(results / "split" / "base" / f"{s}.csv")["id"].tolist() for s in splits}
    assert sorted(sum(split.values(), [])) == sorted(ids)


# --------------------------------------------------------------------------- split lists


def folder_with_lists(root: Path, ids: list[str], test_list: bytes) -> Path:
    """A folder dataset of ``ids`` whose test list holds ``test_list`` (raw bytes, as saved)."""
    make_folder(root, ids)
    (root / "test.txt").write_bytes(test_list)
    return root


def official(root: Path) -> dict[str, str]:
    frame, _ = index_dataset("folder", root, split_lists={"test": "test.txt"})
    return frame.set_index("id")["official_split"].to_dict()


def test_list_with_byte_order_mark(tmp_path):
    """Notepad's 'UTF-8 with BOM': the first id must stay in the test split."""
    root = folder_with_lists(tmp_path, ["abc", "b", "c"], "\ufeffabc\nb\n".encode())
    assert official(root) == {"abc": "test", "b": "test", "c": ""}


def test_list_with_crlf_and_trailing_whitespace(tmp_path):
    root = folder_with_lists(tmp_path, ["a", "b", "c", "d"], b"a\r\nb \t\r\n\r\n  c\r\n")
    assert official(root) == {"a": "test", "b": "test", "c": "test", "d": ""}


def test_utf16_list_and_a_list_in_another_encoding(tmp_path):
    """Notepad's "Unicode" (UTF-16 with a BOM) is read; Latin-1 fails naming the file."""
    root = folder_with_lists(tmp_path, ["é", "b"], "é\r\n".encode("utf-16"))
    assert official(root) == {"é": "test", "b": ""}
    (root / "test.txt").write_bytes("é\n".encode("latin-1"))
    with pytest.raises(SplitListError, match=r"test.txt: split list is not UTF-8 text"):
        official(root)


def test_ids_with_spaces_and_ids_that_look_like_comments(tmp_path):
    ids = ["my image 1", "my image 2", "my", "#NA", "x"]
    text = "# held-out images\nmy image 1\r\n  my image 2  \n#NA\n"
    root = folder_with_lists(tmp_path, ids, text.encode("utf-8-sig"))
    assert official(root) == {
        "my image 1": "test",
        "my image 2": "test",
        "my": "",
        "#NA": "test",
        "x": "",
    }


def test_oxford_lines_give_their_first_field(tmp_path):
    path = tmp_path / "test.txt"
    path.write_bytes(
        b"\xef\xbb\xbf#Image CLASS-ID SPECIES BREED ID\r\nAbyssinian_1 1 1 1\r\nx 2 1 2\r\n"
    )
    entries = list_entries(path, {"Abyssinian_1"}, first_field=True)
    assert [(e.line, e.id, e.found) for e in entries] == [
        (2, "Abyssinian_1", True),
        (3, "x", False),
    ]


def test_listed_id_without_pair_fails_remap_naming_file_line_and_repr(tmp_path):
    """A BOM in the middle of a list (two files pasted together) and a zero-width space are
    invisible in an editor: the error shows them escaped."""
    text = "a\n\ufeffb\nc\u200b\n"
    root = folder_with_lists(tmp_path / "data", ["a", "b", "c", "d"], text.encode())
    listed = str(root / "test.txt")
    with pytest.raises(SplitListError) as err:
        remap(root, tmp_path / "out", split_lists={"test": "test.txt"})
    message = str(err.value)
    assert f"{listed} line 2: id '\\ufeffb' matches no image/mask pair (split test)" in message
    assert f"{listed} line 3: id 'c\\u200b' matches no image/mask pair" in message
    assert not (tmp_path / "out" / "index.csv").exists()
    summary = verify_dataset(root, layout="folder", split_lists={"test": "test.txt"})
    assert not summary["ok"]
    assert {
        "file": listed,
        "problem": "line 2: id '\\ufeffb' matches no image/mask pair (split test)",
    } in summary["problems"]


def test_id_in_both_lists_is_a_test_id(tmp_path, caplog):
    root = folder_with_lists(tmp_path, ["a", "b"], b"a\n")
    (root / "trainval.txt").write_text("a\nb\n")
    for lists in (
        {"test": "test.txt", "trainval": "trainval.txt"},
        {"trainval": "trainval.txt", "test": "test.txt"},
    ):
        frame, _ = index_dataset("folder", root, split_lists=lists)
        assert frame.set_index("id")["official_split"].to_dict() == {"a": "test", "b": "trainval"}
    assert "'a' is in both the" in caplog.text
