"""Seeded, stratified train/val/test split."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segpipe.data.split import MANIFEST_COLUMNS, SplitError, split_dataset, write_split
from segpipe.logs import UserError

GROUPS = {"abyssinian": 40, "beagle": 60, "pug": 20}


def make_index(official: bool = True) -> pd.DataFrame:
    """120 pairs in three groups; with ``official``, every 4th pair of each group is on the test list."""
    rows = []
    for group, n in GROUPS.items():
        for i in range(n):
            image_id = f"{group}_{i:03d}"
            rows.append(
                {
                    "id": image_id,
                    "image": f"images/{image_id}.jpg",
                    "mask": f"masks/{image_id}.png",
                    "raw_mask": f"trimaps/{image_id}.png",
                    "group": group,
                    "official_split": ("test" if i % 4 == 0 else "trainval") if official else "",
                    "height": 100 + i,
                    "width": 120,
                    # Class 2 ('rare') only on the test list of the official split.
                    "classes": "0 1 2" if group == "pug" and i % 4 == 0 else "0 1",
                }
            )
    # Shuffled rows: the split must not depend on the order of the index.
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


def ids(parts: dict[str, pd.DataFrame]) -> dict[str, set[str]]:
    return {name: set(frame["id"]) for name, frame in parts.items()}


SPLIT_KW = dict(val_fraction=0.2, test_fraction=0.25)
NAMES = ["bg", "pet", "rare", "never"]


def test_same_seed_same_split_regardless_of_row_order():
    index = make_index()
    a = split_dataset(index, seed=42, **SPLIT_KW)
    b = split_dataset(index.iloc[::-1].reset_index(drop=True), seed=42, **SPLIT_KW)
    for name in ("train", "val", "test"):
        pd.testing.assert_frame_equal(a[name], b[name])


def test_different_seed_different_split():
    index = make_index(official=False)
    a = ids(split_dataset(index, seed=1, **SPLIT_KW))
    b = ids(split_dataset(index, seed=2, **SPLIT_KW))
    assert a["val"] != b["val"]
    assert a["test"] != b["test"]


@pytest.mark.parametrize("official", [True, False])
def test_no_overlap_and_full_coverage(official):
    index = make_index(official)
    parts = split_dataset(index, seed=0, **SPLIT_KW)
    sets = ids(parts)
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == set(index["id"])
    for frame in parts.values():
        assert list(frame.columns) == MANIFEST_COLUMNS
        assert list(frame["id"]) == sorted(frame["id"])


def test_official_test_list_is_honoured():
    index = make_index()
    parts = split_dataset(index, seed=0, **SPLIT_KW)
    official_test = set(index.loc[index["official_split"] == "test", "id"])
    assert ids(parts)["test"] == official_test
    # Validation is carved from trainval only: 20% of each group's trainval pairs.
    trainval = index[index["official_split"] == "trainval"]
    val = parts["val"]
    for group, n in trainval.groupby("group").size().items():
        assert (val["group"] == group).sum() == round(0.2 * n)


def test_use_official_false_ignores_the_list():
    index = make_index()
    parts = split_dataset(index, seed=0, use_official=False, **SPLIT_KW)
    official_test = set(index.loc[index["official_split"] == "test", "id"])
    assert ids(parts)["test"] != official_test
    assert len(parts["test"]) == sum(round(0.25 * n) for n in GROUPS.values())


def test_carving_without_official_list_is_stratified():
    index = make_index(official=False)
    parts = split_dataset(index, seed=5, **SPLIT_KW)
    for group, n in GROUPS.items():
        n_test = (parts["test"]["group"] == group).sum()
        n_val = (parts["val"]["group"] == group).sum()
        assert n_test == round(0.25 * n), group
        assert n_val == round(0.2 * (n - n_test)), group
        assert (parts["train"]["group"] == group).sum() == n - n_test - n_val


def test_unstratified_split_uses_overall_fractions():
    index = make_index(official=False)
    parts = split_dataset(index, seed=5, stratify=False, **SPLIT_KW)
    assert len(parts["test"]) == round(0.25 * 120)
    assert len(parts["val"]) == round(0.2 * (120 - 30))


@pytest.mark.parametrize(
    "official, rows, fractions, message",
    [
        (
            False,
            2,
            {},
            "config options 'split.val_fraction' and 'split.test_fraction': 2 pairs split into "
            "train 1, val 0, test 1 (test_fraction 0.25, val_fraction 0.2 of the rest); every "
            "split needs a pair: add pairs (at least 3)",
        ),
        (
            True,
            120,
            {"val_fraction": 0.999},
            "config option 'split.val_fraction': 120 pairs split into train 0, val 90, test 30 "
            "(the official test list, val_fraction 0.999 of the rest); every split needs a "
            "pair: lower the fractions",
        ),
    ],
    ids=["too-few-pairs", "val-takes-all"],
)
def test_a_split_left_empty_names_the_options_in_one_line(official, rows, fractions, message):
    """A user error (segpipe.logs.UserError: the split job's log has no traceback) naming the
    fractions and what they left in each split."""
    index = make_index(official=official).head(rows)
    with pytest.raises(SplitError) as err:
        split_dataset(index, seed=0, **{**SPLIT_KW, **fractions})
    assert message in str(err.value) and isinstance(err.value, UserError)


def test_write_split_is_byte_identical(tmp_path):
    index_csv = tmp_path / "index.csv"
    make_index().to_csv(index_csv, index=False)
    outputs = []
    for run in ("a", "b"):
        out = {name: str(tmp_path / run / f"{name}.csv") for name in ("train", "val", "test")}
        classes = str(tmp_path / run / "classes.csv")
        write_split(str(index_csv), out, classes, class_names=NAMES, seed=42, **SPLIT_KW)
        outputs.append(out)
        assert Path(classes).read_bytes() == (tmp_path / "a" / "classes.csv").read_bytes()
    for name in ("train", "val", "test"):
        first = (tmp_path / "a" / f"{name}.csv").read_bytes()
        assert first == (tmp_path / "b" / f"{name}.csv").read_bytes()
        assert first.splitlines()[0].decode() == ",".join(MANIFEST_COLUMNS)
    train = pd.read_csv(outputs[0]["train"], dtype={"id": str})
    test = pd.read_csv(outputs[0]["test"], dtype={"id": str})
    assert len(train) + len(pd.read_csv(outputs[0]["val"])) + len(test) == 120
    assert len(test) == 30  # the official list


def test_write_split_reads_empty_official_column(tmp_path):
    # An index from a dataset without test lists has an empty official_split column.
    index_csv = tmp_path / "index.csv"
    make_index(official=False).to_csv(index_csv, index=False)
    out = {name: str(tmp_path / f"{name}.csv") for name in ("train", "val", "test")}
    write_split(
        str(index_csv), out, str(tmp_path / "c.csv"), class_names=NAMES, seed=42, **SPLIT_KW
    )
    assert len(pd.read_csv(out["test"])) == sum(round(0.25 * n) for n in GROUPS.values())


def test_a_class_missing_from_train_or_val_is_warned_by_name(tmp_path, caplog):
    index_csv = tmp_path / "index.csv"
    make_index().to_csv(index_csv, index=False)
    out = {name: str(tmp_path / f"{name}.csv") for name in ("train", "val", "test")}
    classes = tmp_path / "classes.csv"
    write_split(str(index_csv), out, str(classes), class_names=NAMES, seed=42, **SPLIT_KW)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "class 'rare' (id 2) appears in no mask of the train and val splits" in warnings
    assert "class 'never' (id 3) appears in no mask of the train and val splits" in warnings
    assert not any("'bg'" in w or "'pet'" in w for w in warnings)
    table = pd.read_csv(classes).set_index("class_name")
    assert list(table.columns) == ["class_id", "train", "val", "test"]
    assert table.loc["rare", "test"] == 5 and table.loc["rare", ["train", "val"]].sum() == 0
    assert table.loc["bg", ["train", "val", "test"]].sum() == 120


def test_an_empty_official_test_list_carves_test_from_trainval_with_a_warning(caplog):
    """Images on the trainval list and none on a test list: the test split is carved from the
    trainval list's images, which the log says as a warning (and the run report shows)."""
    index = make_index()
    index["official_split"] = "trainval"
    caplog.set_level("INFO", logger="segpipe.data.split")
    parts = split_dataset(index, seed=0, val_fraction=0.2, test_fraction=0.25)
    assert len(parts["test"]) == 30
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert record.getMessage() == (
        "no image is on an official test list, but 120 are on the trainval list: the test split "
        "(30 images) is carved from them at split.test_fraction 0.25; list the test images in the "
        "test list, or set split.use_official: false to carve it from all images knowingly"
    )
    for kept in (make_index(), make_index(official=False)):  # a test list, or no list at all
        caplog.clear()
        split_dataset(kept, seed=0, val_fraction=0.2, test_fraction=0.25)
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
    caplog.clear()
    split_dataset(index, seed=0, val_fraction=0.2, test_fraction=0.25, use_official=False)
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
