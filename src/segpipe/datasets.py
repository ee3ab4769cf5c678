"""Index a dataset directory into (id, image, mask, group, official_split) rows, by layout.

Pairs that cannot be used are not dropped silently: they are returned as quarantine rows
(file, problem) that the remap step writes out and the report shows.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm"}
MASK_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".gif"}
COLUMNS = ["id", "image", "raw_mask", "group", "official_split"]


def _files_by_stem(
    folder: Path, suffixes: set[str], what: str, quarantine: list
) -> dict[str, Path]:
    """Map file stem -> path for files with a known suffix; everything else goes to quarantine."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {folder}")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            # AppleDouble (._x) and other hidden files, as shipped in the real Oxford archive.
            quarantine.append((str(path), "hidden file, not an image"))
        elif not path.is_file():
            continue
        elif path.suffix.lower() not in suffixes:
            quarantine.append((str(path), f"not a {what} file (suffix {path.suffix or 'none'})"))
        elif path.stem in found:
            quarantine.append(
                (str(path), f"duplicate stem '{path.stem}' (also {found[path.stem]})")
            )
        else:
            found[path.stem] = path
    return found


def pair_by_stem(images_dir: Path, masks_dir: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Pair ``images_dir/<stem>.*`` with ``masks_dir/<stem>.*`` whatever the extensions."""
    quarantine: list[tuple[str, str]] = []
    images = _files_by_stem(Path(images_dir), IMAGE_SUFFIXES, "image", quarantine)
    masks = _files_by_stem(Path(masks_dir), MASK_SUFFIXES, "mask", quarantine)
    for stem in sorted(images.keys() - masks.keys()):
        quarantine.append((str(images[stem]), f"no mask for this image in {masks_dir}"))
    for stem in sorted(masks.keys() - images.keys()):
        quarantine.append((str(masks[stem]), f"no image for this mask in {images_dir}"))
    rows = [
        {
            "id": s,
            "image": str(images[s]),
            "raw_mask": str(masks[s]),
            "group": "",
            "official_split": "",
        }
        for s in sorted(images.keys() & masks.keys())
    ]
    return pd.DataFrame(rows, columns=COLUMNS), quarantine


def _read_oxford_list(path: Path) -> dict[str, str]:
    """Names in an official list file (``Name CLASS-ID SPECIES BREED-ID`` lines, # comments)."""
    if not path.exists():
        return {}
    names = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            names[fields[0]] = fields[1] if len(fields) > 1 else ""
    return names


def index_oxford(root: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Index the Oxford-IIIT Pet layout: images/, annotations/trimaps/, annotations/{trainval,test}.txt.

    The group (for stratified splits) is the breed, the file name without its ``_<number>`` suffix.
    """
    root = Path(root)
    frame, quarantine = pair_by_stem(root / "images", root / "annotations" / "trimaps")
    trainval = _read_oxford_list(root / "annotations" / "trainval.txt")
    test = _read_oxford_list(root / "annotations" / "test.txt")
    frame["group"] = frame["id"].str.rsplit("_", n=1).str[0]
    frame["official_split"] = [
        "test" if i in test else "trainval" if i in trainval else "" for i in frame["id"]
    ]
    unlisted = int((frame["official_split"] == "").sum())
    if (trainval or test) and unlisted:
        logger.warning("%d images are in neither trainval.txt nor test.txt", unlisted)
    return frame, quarantine


def index_dataset(layout: str, root: Path, *, images_dir: str = "images", masks_dir: str = "masks"):
    """Index ``root`` according to ``layout`` ('oxford' or 'folder')."""
    if layout == "oxford":
        return index_oxford(Path(root))
    if layout == "folder":
        return pair_by_stem(Path(root) / images_dir, Path(root) / masks_dir)
    raise ValueError(f"unknown dataset layout '{layout}'; valid: ['oxford', 'folder']")
