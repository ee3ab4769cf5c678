"""A small, offline, deterministic look-alike of the Oxford-IIIT Pet dataset.

:func:`make_oxford_like` writes the official layout (``images/*.jpg``,
``annotations/trimaps/*.png``, ``annotations/trainval.txt`` and ``annotations/test.txt``) with
textured "pets" (smooth blobs) on textured backgrounds, learnable by a small UNet in minutes.
:func:`pack_oxford_archives` packs it into byte-reproducible ``images.tar.gz`` and
``annotations.tar.gz`` and returns resource entries shaped like
:data:`segpipe.data.download.OXFORD_PETS_RESOURCES`, so the demo goes through the same download,
verification and extraction code as the real dataset.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pooch
from PIL import Image, ImageFilter

from segpipe.io import atomic_dir, atomic_path, write_json
from segpipe.logs import progress

logger = logging.getLogger(__name__)

PET, BACKGROUND, BORDER = 1, 2, 3
"""Trimap values, as in the real dataset."""

JPEG_QUALITY = 90


@dataclass(frozen=True)
class Breed:
    """One class of the look-alike dataset, with the fields of the official list files."""

    name: str  # cats Capitalised, dogs lowercase, as in the real set
    class_id: int  # 1..N over all breeds, in case-insensitive alphabetical order
    species: int  # 1 = cat, 2 = dog
    breed_id: int  # 1..n within the species
    colour: tuple[int, int, int]  # mean RGB of the fur


BREEDS: tuple[Breed, ...] = (
    Breed("Abyssinian", 1, 1, 1, (196, 118, 64)),
    Breed("beagle", 2, 2, 1, (120, 84, 52)),
    Breed("Bengal", 3, 1, 2, (222, 184, 110)),
    Breed("boxer", 4, 2, 2, (70, 50, 40)),
)


def make_oxford_like(
    root: str | os.PathLike,
    *,
    n_images: int = 48,
    seed: int = 0,
    min_size: int = 48,
    max_size: int = 96,
    test_fraction: float = 0.25,
) -> None:
    """Write an Oxford-IIIT-Pet-shaped dataset of ``n_images`` images to ``root``.

    Images are spread evenly over :data:`BREEDS` and named ``<Breed>_<k>``; width and height are
    drawn independently from ``[min_size, max_size]``. Per breed, ``test_fraction`` of the images
    (rounded) go to ``test.txt`` and the rest to ``trainval.txt``. The output depends only on the
    arguments: the same arguments give byte-identical files. ``root`` is replaced as a whole.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, not {n_images}")
    if not 16 <= min_size <= max_size:
        raise ValueError(f"need 16 <= min_size <= max_size, got {min_size} and {max_size}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), not {test_fraction}")

    # One independent stream per image, plus one for the split: changing the split fraction or
    # the number of images leaves the other images as they were.
    split_seed, *image_seeds = np.random.SeedSequence(seed).spawn(n_images + 1)
    names = _image_names(n_images)
    with atomic_dir(root) as tmp:
        (tmp / "images").mkdir()
        (tmp / "annotations" / "trimaps").mkdir(parents=True)
        samples = zip(names, image_seeds, strict=True)
        for (name, breed), image_seed in progress(samples, desc="synthetic pets", total=n_images):
            rng = np.random.default_rng(image_seed)
            height, width = rng.integers(min_size, max_size, endpoint=True, size=2)
            image, trimap = _make_sample(rng, int(height), int(width), breed)
            Image.fromarray(image).save(tmp / "images" / f"{name}.jpg", quality=JPEG_QUALITY)
            Image.fromarray(trimap).save(tmp / "annotations" / "trimaps" / f"{name}.png")
        trainval, test = _split(names, test_fraction, np.random.default_rng(split_seed))
        for filename, entries in (("trainval.txt", trainval), ("test.txt", test)):
            lines = [f"{n} {b.class_id} {b.species} {b.breed_id}\n" for n, b in entries]
            (tmp / "annotations" / filename).write_text("".join(lines), encoding="utf-8")
    logger.info(
        "wrote %d synthetic images to %s (%d trainval, %d test)",
        n_images,
        root,
        len(trainval),
        len(test),
    )


def _image_names(n_images: int) -> list[tuple[str, Breed]]:
    """``[("Abyssinian_1", breed), ("beagle_1", breed), ...]``: breeds in turn, numbered from 1."""
    return [
        (f"{BREEDS[i % len(BREEDS)].name}_{i // len(BREEDS) + 1}", BREEDS[i % len(BREEDS)])
        for i in range(n_images)
    ]


def _split(
    names: list[tuple[str, Breed]], test_fraction: float, rng: np.random.Generator
) -> tuple[list[tuple[str, Breed]], list[tuple[str, Breed]]]:
    """Draw ``test_fraction`` of each breed's images for test; both lists sorted like the real."""
    trainval, test = [], []
    for breed in BREEDS:
        members = [entry for entry in names if entry[1] == breed]
        order = rng.permutation(len(members))
        n_test = round(test_fraction * len(members))
        test += [members[i] for i in order[:n_test]]
        trainval += [members[i] for i in order[n_test:]]

    def official_order(entry: tuple[str, Breed]) -> tuple[int, str]:
        return entry[1].class_id, entry[0]

    return sorted(trainval, key=official_order), sorted(test, key=official_order)


def _make_sample(
    rng: np.random.Generator, height: int, width: int, breed: Breed
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image (uint8, HxWx3) and its trimap (uint8, HxW, values 1/2/3)."""
    pet = _pet_mask(rng, height, width)
    fur = _fur(rng, height, width, np.asarray(breed.colour, dtype=float))
    background = _background(rng, height, width, avoid=np.asarray(breed.colour, dtype=float))
    image = np.where(pet[..., None], fur, background)
    image += rng.normal(0.0, 6.0, size=image.shape)  # sensor noise over everything
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return image, _trimap(pet)


def _pet_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth blob: a union of 1-3 rotated ellipses covering 15-45% of the image."""
    ys, xs = np.mgrid[0:height, 0:width].astype(float)
    while True:
        target = rng.uniform(0.15, 0.45) * height * width
        mask = np.zeros((height, width), dtype=bool)
        # The body: an ellipse with about 70% of the target area, kept mostly inside the image.
        aspect = rng.uniform(0.6, 1.6)
        a = np.sqrt(0.7 * target / np.pi * aspect)
        b = np.sqrt(0.7 * target / np.pi / aspect)
        cy = rng.uniform(0.3, 0.7) * height
        cx = rng.uniform(0.3, 0.7) * width
        mask |= _ellipse(ys, xs, cy, cx, a, b, rng.uniform(0, np.pi))
        # Head, tail...: smaller ellipses centred on the body's outline.
        for _ in range(rng.integers(0, 2, endpoint=True)):
            angle = rng.uniform(0, 2 * np.pi)
            py, px = cy + b * np.sin(angle), cx + a * np.cos(angle)
            scale = rng.uniform(0.3, 0.6)
            mask |= _ellipse(
                ys, xs, py, px, a * scale, b * scale * rng.uniform(0.7, 1.3), rng.uniform(0, np.pi)
            )
        if 0.15 <= mask.mean() <= 0.45:
            return mask


def _ellipse(
    ys: np.ndarray, xs: np.ndarray, cy: float, cx: float, a: float, b: float, theta: float
) -> np.ndarray:
    """Pixels inside the ellipse with centre (cy, cx), semi-axes a (along theta) and b."""
    dy, dx = ys - cy, xs - cx
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Value noise in about [-1, 1]: random values on a ``cells`` grid, smoothly interpolated."""
    grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1))
    fy, y0 = _interpolation_weights(height, cells)
    fx, x0 = _interpolation_weights(width, cells)
    fy, fx = fy[:, None], fx[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _interpolation_weights(n: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``n`` pixels over ``cells`` grid cells: smoothstep weights and left grid indices."""
    position = np.linspace(0.0, cells, n, endpoint=False)
    index = position.astype(int)
    t = position - index
    return t * t * (3 - 2 * t), index


def _fur(rng: np.random.Generator, height: int, width: int, colour: np.ndarray) -> np.ndarray:
    """Breed-coloured fur: the breed colour, jittered per image, with blotches and fine grain."""
    base = np.clip(colour + rng.normal(0.0, 12.0, size=3), 0, 255)
    blotches = _smooth_noise(rng, height, width, cells=int(rng.integers(5, 9)))[..., None]
    grain = rng.normal(0.0, 18.0, size=(height, width, 1))  # the same in all channels: brightness
    return base * (1.0 + 0.25 * blotches) + grain


def _background(rng: np.random.Generator, height: int, width: int, avoid: np.ndarray) -> np.ndarray:
    """A smooth, striped background whose colour stays clearly away from ``avoid`` (the fur)."""
    while True:
        colour = rng.uniform(20.0, 235.0, size=3)
        if np.linalg.norm(colour - avoid) > 90.0:
            break
    gradient = np.stack([_smooth_noise(rng, height, width, cells=2) for _ in range(3)], axis=-1)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(6.0, 16.0)
    ys, xs = np.mgrid[0:height, 0:width].astype(float)
    phase = 2 * np.pi * (xs * np.cos(theta) + ys * np.sin(theta)) / period + rng.uniform(0, 6.3)
    stripes = rng.uniform(10.0, 30.0) * np.sin(phase)[..., None]
    return colour + 45.0 * gradient + stripes


def _trimap(pet: np.ndarray) -> np.ndarray:
    """1 = pet, 2 = background, 3 = a band of 2-4 px (scaled to size) along the outline."""
    radius = max(1, round(min(pet.shape) / 40))
    mask = Image.fromarray(pet.astype(np.uint8) * 255)
    grown = np.asarray(mask.filter(ImageFilter.MaxFilter(2 * radius + 1))) > 0
    shrunk = np.asarray(mask.filter(ImageFilter.MinFilter(2 * radius + 1))) > 0
    trimap = np.where(pet, PET, BACKGROUND).astype(np.uint8)
    trimap[grown & ~shrunk] = BORDER
    return trimap


def pack_oxford_archives(root: str | os.PathLike, out_dir: str | os.PathLike) -> list[dict]:
    """Pack a dataset written by :func:`make_oxford_like` into two byte-reproducible archives.

    ``out_dir/images.tar.gz`` holds ``images/...`` and ``out_dir/annotations.tar.gz`` holds
    ``annotations/...``, like the official archives. Returns resource entries
    (``filename``, ``file://`` ``url``, ``md5:`` ``known_hash``) in the shape of
    :data:`segpipe.data.download.OXFORD_PETS_RESOURCES`.
    """
    root = Path(root)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resources = []
    for top in ("images", "annotations"):
        filename = f"{top}.tar.gz"
        archive = out_dir / filename
        _write_reproducible_tar_gz(root, top, archive)
        resources.append(
            {
                "filename": filename,
                "url": f"{out_dir.resolve().as_uri()}/{filename}",
                "known_hash": f"md5:{pooch.file_hash(str(archive), alg='md5')}",
            }
        )
        logger.info("packed %s/ into %s", root / top, archive)
    return resources


def _write_reproducible_tar_gz(root: Path, top: str, archive: Path) -> None:
    """Write ``root/top`` (recursively) to ``archive`` with no time, owner or order variation."""
    paths = [root / top, *sorted((root / top).rglob("*"), key=lambda p: p.relative_to(root).parts)]
    with (
        atomic_path(archive) as tmp,
        open(tmp, "wb") as raw,
        # filename sets the name stored in the gzip header, which is otherwise the temp file's.
        gzip.GzipFile(filename=archive.name, fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for path in paths:
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = path.read_bytes()
                info.mode, info.size = 0o644, len(data)
                tar.addfile(info, io.BytesIO(data))


def synthesize_archives(
    out_dir: str | os.PathLike,
    *,
    n_images: int = 48,
    seed: int = 0,
    min_size: int = 48,
    max_size: int = 96,
    test_fraction: float = 0.25,
) -> list[dict]:
    """Make a look-alike dataset and leave only its archives and ``resources.json`` in ``out_dir``.

    The arguments are those of :func:`make_oxford_like`; the return value (also written to
    ``out_dir/resources.json``) is that of :func:`pack_oxford_archives`.
    """
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="segpipe-synthetic-") as tmp:
        root = Path(tmp) / "oxford-iiit-pet"
        make_oxford_like(
            root,
            n_images=n_images,
            seed=seed,
            min_size=min_size,
            max_size=max_size,
            test_fraction=test_fraction,
        )
        resources = pack_oxford_archives(root, out_dir)
    write_json(out_dir / "resources.json", resources)
    return resources
