"""segpipe.data.synthetic: the offline Oxford-IIIT-Pet look-alike and its reproducible archives."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segpipe.data.synthetic import (
    BREEDS,
    make_oxford_like,
    pack_oxford_archives,
    synthesize_archives,
)

N_IMAGES = 24


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "oxford-iiit-pet"
    make_oxford_like(root, n_images=N_IMAGES, seed=7, min_size=40, max_size=90)
    return root


def _read_list(path: Path) -> list[list[str]]:
    return [line.split(" ") for line in path.read_text(encoding="utf-8").splitlines()]


def test_layout_is_the_official_one(tree: Path) -> None:
    assert sorted(p.relative_to(tree).as_posix() for p in tree.iterdir()) == [
        "annotations",
        "images",
    ]
    assert sorted(p.name for p in (tree / "annotations").iterdir()) == [
        "test.txt",
        "trainval.txt",
        "trimaps",
    ]
    images = sorted(p.stem for p in (tree / "images").iterdir() if p.suffix == ".jpg")
    trimaps = sorted(p.stem for p in (tree / "annotations" / "trimaps").iterdir())
    assert len(images) == N_IMAGES and images == trimaps


def test_list_files_cover_every_image_once(tree: Path) -> None:
    trainval = _read_list(tree / "annotations" / "trainval.txt")
    test = _read_list(tree / "annotations" / "test.txt")
    listed = [row[0] for row in trainval + test]
    assert sorted(listed) == sorted(p.stem for p in (tree / "images").glob("*.jpg"))
    assert len(set(listed)) == len(listed)

    by_name = {breed.name: breed for breed in BREEDS}
    for row in trainval + test:
        assert len(row) == 4
        name, number = row[0].rsplit("_", 1)
        breed = by_name[name]
        assert int(number) >= 1
        assert [int(v) for v in row[1:]] == [breed.class_id, breed.species, breed.breed_id]
        assert name[0].isupper() == (breed.species == 1)  # cats Capitalised, dogs lowercase
    per_breed = [sum(row[0].startswith(f"{b.name}_") for row in test) for b in BREEDS]
    assert per_breed == [2, 2, 2, 2]  # 6 images per breed, round(0.25 * 6) = 2 of them for test


def test_images_and_trimaps(tree: Path) -> None:
    sizes = set()
    all_three = 0
    for jpg in sorted((tree / "images").glob("*.jpg")):
        image = Image.open(jpg)
        trimap = Image.open(tree / "annotations" / "trimaps" / f"{jpg.stem}.png")
        assert image.mode == "RGB" and trimap.mode == "L"
        assert image.size == trimap.size
        assert all(40 <= side <= 90 for side in image.size)
        sizes.add(image.size)
        values = set(np.unique(np.asarray(trimap)).tolist())
        assert values <= {1, 2, 3}
        all_three += values == {1, 2, 3}
        pet_fraction = (np.asarray(trimap) != 2).mean()  # the pet with its border band
        assert 0.1 < pet_fraction < 0.6
    assert all_three >= 0.9 * N_IMAGES
    assert len(sizes) > N_IMAGES // 2
    assert len({w for w, _ in sizes}) > 1 and len({h for _, h in sizes}) > 1


def test_pet_differs_from_background(tree: Path) -> None:
    """The pet's pixels differ from the background's, but no one channel threshold separates them."""
    pet, background = [], []
    for jpg in sorted((tree / "images").glob("*.jpg")):
        pixels = np.asarray(Image.open(jpg), dtype=float).reshape(-1, 3)
        trimap = np.asarray(Image.open(tree / "annotations" / "trimaps" / f"{jpg.stem}.png"))
        pet.append(pixels[trimap.ravel() == 1])
        background.append(pixels[trimap.ravel() == 2])
        distance = np.linalg.norm(pet[-1].mean(axis=0) - background[-1].mean(axis=0))
        assert distance > 40, jpg.name
    pet_pixels, background_pixels = np.concatenate(pet), np.concatenate(background)
    labels = np.r_[np.ones(len(pet_pixels)), np.zeros(len(background_pixels))]
    pixels = np.concatenate([pet_pixels, background_pixels])
    majority = max(labels.mean(), 1 - labels.mean())
    for channel in range(3):
        best = max(
            max(((pixels[:, channel] > t) == labels).mean() for t in range(0, 256, 4)),
            max(((pixels[:, channel] <= t) == labels).mean() for t in range(0, 256, 4)),
        )
        assert best < majority + 0.1, f"channel {channel} alone separates pet from background"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    kwargs = dict(n_images=8, min_size=32, max_size=64, test_fraction=0.25)
    first = synthesize_archives(tmp_path / "a", seed=1, **kwargs)
    second = synthesize_archives(tmp_path / "b", seed=1, **kwargs)
    other = synthesize_archives(tmp_path / "c", seed=2, **kwargs)
    for name in ("images.tar.gz", "annotations.tar.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    hashes = [[r["known_hash"] for r in resources] for resources in (first, second, other)]
    assert hashes[0] == hashes[1] and hashes[0][0] != hashes[2][0]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "annotations.tar.gz",
        "images.tar.gz",
        "resources.json",
    ]
    assert json.loads((tmp_path / "a" / "resources.json").read_text()) == first


def test_archives_match_the_official_ones_in_shape(tree: Path, tmp_path: Path) -> None:
    resources = pack_oxford_archives(tree, tmp_path / "archives")
    assert [r["filename"] for r in resources] == ["images.tar.gz", "annotations.tar.gz"]
    for resource in resources:
        archive = tmp_path / "archives" / resource["filename"]
        assert resource["url"] == archive.resolve().as_uri()
        assert resource["known_hash"].startswith("md5:") and len(resource["known_hash"]) == 36
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names, key=lambda n: n.split("/"))
        top = resource["filename"].removesuffix(".tar.gz")
        assert all(n == top or n.startswith(f"{top}/") for n in names)
        for member in members:
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
                0,
                0,
                0,
                "",
                "",
            )
            assert member.mode == (0o755 if member.isdir() else 0o644)
            assert member.isdir() or member.isfile()
    with tarfile.open(tmp_path / "archives" / "annotations.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"annotations/trainval.txt", "annotations/test.txt"} <= names
    assert sum(n.startswith("annotations/trimaps/") for n in names) == N_IMAGES


@pytest.mark.parametrize(
    "kwargs",
    [{"n_images": 0}, {"min_size": 80, "max_size": 60}, {"test_fraction": 1.0}],
)
def test_invalid_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_oxford_like(tmp_path / "root", **kwargs)
    assert not (tmp_path / "root").exists()
