"""Seeded, stratified train/val/test split and cross-validation folds, persisted as CSV
manifests.

Identical images (the same ``content`` digest in the remap index, see
:func:`segpipe.data.images.content_digest`) are one unit: they go to the same split and the same fold,
so that a copy of a test image is never trained on. An index without the column (or an image
without a digest) makes every image a unit of its own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from segpipe.io import read_table, write_csv
from segpipe.logs import UserError

logger = logging.getLogger(__name__)
MANIFEST_COLUMNS = ["id", "image", "mask", "group", "height", "width"]


class FoldError(UserError, ValueError):
    """More folds than images to cut them from."""


class SplitError(UserError, ValueError):
    """The split fractions leave a split without images."""


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A split manifest; ids, groups and paths as written (``NA`` or ``nan`` stay strings)."""
    return read_table(path)


def units(frame: pd.DataFrame) -> pd.Series:
    """The unit of each row of ``frame`` (aligned with it): its ``content`` digest, shared by
    identical images, or its id where it has none."""
    ids = "id:" + frame["id"].astype(str)
    if "content" not in frame:
        return ids
    content = frame["content"]
    return content.where(content.notna() & (content.astype(str) != ""), ids).astype(str)


def _strata(frame: pd.DataFrame, unit: pd.Series, stratify: bool):
    """(stratum, its units in id order): a unit belongs to the group of its first id."""
    first = frame.assign(_unit=unit.to_numpy()).drop_duplicates("_unit")
    parts = first.groupby("group", sort=True) if stratify else [("", first)]
    return [(name, part["_unit"].to_numpy()) for name, part in parts]


def _carve(frame: pd.DataFrame, fraction: float, rng: np.random.Generator, stratify: bool):
    """Split ``frame`` into (rest, carved) with ``fraction`` of each group (or of all) carved;
    identical images (:func:`units`) are carved together."""
    unit = units(frame)
    size = unit.value_counts()
    carved: list[str] = []
    for _, keys in _strata(frame, unit, stratify):
        n = int(round(fraction * size[keys].sum()))
        order = rng.permutation(keys)
        before = np.cumsum(size[order].to_numpy()) - size[order].to_numpy()
        carved.extend(order[before < n])
    if not carved and len(frame) > 1:  # tiny data: at least one item
        carved = [rng.permutation(unit.drop_duplicates().to_numpy())[0]]
    mask = unit.isin(carved).to_numpy()
    return frame[~mask], frame[mask]


def _with_test_twins(frame: pd.DataFrame, is_test: pd.Series) -> pd.Series:
    """``is_test`` widened to the images identical to a test-list image, with a warning naming
    them: as an id in the test list and in another list, they are test images."""
    unit = units(frame)
    pulled = ~is_test & unit.isin(set(unit[is_test]))
    for key in unit[pulled].drop_duplicates():
        logger.warning(
            "identical images %s are in different split lists: all are test images",
            sorted(frame.loc[unit == key, "id"]),
        )
    return is_test | pulled


def carved_from_trainval(index: pd.DataFrame) -> int:
    """How many images of ``index`` are on an official trainval list when none is on a test
    list (the test split is then carved from them); 0 otherwise."""
    lists = index["official_split"].fillna("")
    return 0 if (lists == "test").any() else int((lists == "trainval").sum())


def warn_carved_from_trainval(index: pd.DataFrame, test: int, test_fraction: float) -> None:
    """Warn when the test split (``test`` images) is carved from the trainval list's images:
    an empty test list, or a trainval list alone."""
    listed = carved_from_trainval(index)
    if listed:
        logger.warning(
            "no image is on an official test list, but %d are on the trainval list: the test "
            "split (%d images) is carved from them at split.test_fraction %g; list the test "
            "images in the test list, or set split.use_official: false to carve it from all "
            "images knowingly",
            listed,
            test,
            test_fraction,
        )


def split_dataset(
    index: pd.DataFrame,
    *,
    seed: int,
    val_fraction: float,
    test_fraction: float,
    use_official: bool = True,
    stratify: bool = True,
) -> dict[str, pd.DataFrame]:
    """Return train/val/test frames. The same index and seed always give the same split.

    With ``use_official`` and an ``official_split`` column naming a test list, that list is the
    test set and validation is carved from the rest; otherwise test is carved first.
    """
    frame = index.sort_values("id").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    official = use_official and (frame["official_split"].fillna("") == "test").any()
    if official:
        is_test = _with_test_twins(frame, frame["official_split"] == "test")
        pool, test = frame[~is_test], frame[is_test]
    else:
        pool, test = _carve(frame, test_fraction, rng, stratify)
        if use_official:
            warn_carved_from_trainval(frame, len(test), test_fraction)
    train, val = _carve(pool, val_fraction, rng, stratify)
    parts = {"train": train, "val": val, "test": test}
    if any(part.empty for part in parts.values()):
        options, test_from = (
            ("option 'split.val_fraction'", "the official test list")
            if official
            else (
                "options 'split.val_fraction' and 'split.test_fraction'",
                f"test_fraction {test_fraction:g}",
            )
        )
        sizes = ", ".join(f"{name} {len(part)}" for name, part in parts.items())
        advice = "lower the fractions" if len(frame) >= 3 else "add pairs (at least 3)"
        raise SplitError(
            f"config {options}: {len(frame)} pairs split into {sizes} ({test_from}, "
            f"val_fraction {val_fraction:g} of the rest); every split needs a pair: {advice}"
        )
    logger.info(
        "split (%s test list, seed %d): %s",
        "official" if official else "carved",
        seed,
        ", ".join(f"{k} {len(v)}" for k, v in parts.items()),
    )
    return {
        k: v[MANIFEST_COLUMNS].sort_values("id").reset_index(drop=True) for k, v in parts.items()
    }


def fold_assignment(
    pool: pd.DataFrame, *, folds: int, seed: int, stratify: bool = True
) -> pd.Series:
    """The fold (0 .. folds - 1) of every image of ``pool`` (index: its ids), seeded.

    Each group (stratified) or the whole pool is shuffled, the groups are laid end to end in
    sorted order and dealt out to the folds in turn: every group spreads evenly over the folds
    and the folds' sizes differ by at most one. Identical images (:func:`units`, from a
    ``content`` column) are dealt as one, into one fold. The same pool and seed always give the
    same folds. Raises :class:`FoldError` when the pool holds fewer distinct images than
    ``folds``.
    """
    frame = pool.sort_values("id")
    unit = units(frame)
    distinct = unit.nunique()
    if folds > distinct:
        what = "images" if distinct == len(pool) else "distinct images (copies count once)"
        raise FoldError(
            f"config option 'split.folds': {folds} folds, but the train+val pool holds only "
            f"{distinct} {what}; use at most {distinct} folds"
        )
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(k) for _, k in _strata(frame, unit, stratify)])
    fold = pd.Series(np.arange(len(order)) % folds, index=order)
    return pd.Series(fold[unit].to_numpy(), index=frame["id"].to_numpy(), name="fold")


def write_fold(
    index_csv: str,
    pool_manifests: list[str],
    fold: int,
    manifests: dict[str, str],
    classes_csv: str,
    *,
    class_names: list[str],
    folds: int,
    seed: int,
    stratify: bool = True,
) -> None:
    """Write fold ``fold`` of the k-fold cross-validation of a split's train+val pool (the
    ``pool_manifests``): its images as ``manifests["val"]``, the other folds' as
    ``manifests["train"]``, and the images per class of both (:func:`class_presence`, which
    warns for a class the fold's val part lacks). Every fold's job computes the same seeded
    assignment (:func:`fold_assignment`) and writes its own fold.
    """
    index = read_table(index_csv)
    pool = pd.concat([read_table(path) for path in pool_manifests], ignore_index=True)
    if "content" in index:
        pool = pool.merge(index[["id", "content"]], on="id", how="left")
    assigned = fold_assignment(pool, folds=folds, seed=seed, stratify=stratify)
    in_fold = pool["id"].map(assigned) == fold
    parts = {"train": pool[~in_fold], "val": pool[in_fold]}
    logger.info(
        "fold %d of %d (seed %d%s): train %d, val %d",
        fold,
        folds,
        seed,
        ", stratified by group" if stratify else "",
        len(parts["train"]),
        len(parts["val"]),
    )
    for name, frame in parts.items():
        write_csv(manifests[name], frame[MANIFEST_COLUMNS].sort_values("id"))
    presence = class_presence(index, parts, class_names, where=f"fold {fold}")
    write_csv(classes_csv, presence)


def class_presence(
    index: pd.DataFrame,
    parts: dict[str, pd.DataFrame],
    class_names: list[str],
    *,
    where: str = "",
) -> pd.DataFrame:
    """Images of each split whose mask holds each class (the remap index's ``classes`` column).

    A class that no train or val mask holds cannot be learnt or validated: it is logged as a
    warning naming the class and the splits (of ``where``, a fold), and the report shows it
    under data quality.
    """
    present = {i: set(c.split()) for i, c in zip(index["id"], index["classes"], strict=True)}
    rows = []
    for class_id, name in enumerate(class_names):
        row = {"class_id": class_id, "class_name": name}
        for split, frame in parts.items():
            row[split] = sum(str(class_id) in present[i] for i in frame["id"])
        missing = [s for s in ("train", "val") if s in parts and row[s] == 0]
        if missing:
            logger.warning(
                "class '%s' (id %d) appears in no mask of the %s split%s%s",
                name,
                class_id,
                " and ".join(missing),
                "s" if len(missing) > 1 else "",
                f" of {where}" if where else "",
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=["class_id", "class_name", *parts])


def write_split(
    index_csv: str,
    manifests: dict[str, str],
    classes_csv: str,
    *,
    class_names: list[str],
    **kwargs,
) -> None:
    """Read the remap index, split it, and write one manifest CSV per split (keys of
    ``manifests``) and the images per class and split (:func:`class_presence`).

    Ids, groups and paths are read as written (:func:`segpipe.io.read_table`): an id such as
    ``NA`` or ``nan`` stays that id.
    """
    index = read_table(index_csv)
    parts = split_dataset(index, **kwargs)
    for name, frame in parts.items():
        write_csv(manifests[name], frame)
    write_csv(classes_csv, class_presence(index, parts, class_names))
