"""Index a dataset directory into (id, image, mask, group, official_split) rows, by layout.

Layouts (``root`` is the dataset directory):

- ``oxford``: ``images/``, ``annotations/trimaps/``, ``annotations/{trainval,test}.txt``
  (Oxford-IIIT Pet); the group (for stratified splits) is the breed.
- ``voc``: ``JPEGImages/``, ``SegmentationClass/`` (palette PNGs), and
  ``ImageSets/Segmentation/{train,val}.txt`` (Pascal VOC). VOC's own val list becomes the test
  split (its test masks are not public); validation is carved from train. JPEGImages holds many
  images that have no segmentation mask: those are counted in the log, not quarantined, unless a
  list names them.
- ``folder``: ``images/`` + ``masks/`` paired by file stem whatever the extensions
  (``a.jpg`` + ``a.png``); split lists are optional.

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
LAYOUTS = ("oxford", "voc", "folder")
LAYOUT_DIRS = {
    "oxford": ("images", "annotations/trimaps"),
    "voc": ("JPEGImages", "SegmentationClass"),
    "folder": ("images", "masks"),
}
"""Image and mask directories of each layout, relative to the dataset root."""
LAYOUT_LISTS = {
    "oxford": {"trainval": "annotations/trainval.txt", "test": "annotations/test.txt"},
    "voc": {
        "trainval": "ImageSets/Segmentation/train.txt",
        "test": "ImageSets/Segmentation/val.txt",
    },
    "folder": {},
}
"""Official split lists of each layout (split name -> file relative to the root)."""

NO_MASK = "no mask for this image"
NO_IMAGE = "no image for this mask"
LISTED_MISSING = "listed, but there is neither an image nor a mask named"
_LOST_PAIR = (NO_MASK, NO_IMAGE, LISTED_MISSING)


def is_lost_pair(problem: str) -> bool:
    """Whether a quarantine problem from indexing stands for a lost image/mask pair.

    Stray files (hidden files, non-image files such as the ``.mat`` files in the real Oxford
    archive, duplicate stems) are listed in the quarantine but are not pairs: they do not count
    towards ``remap.max_quarantine_fraction``.
    """
    return problem.startswith(_LOST_PAIR)


def _files_by_stem(
    folder: Path, suffixes: set[str], what: str, quarantine: list, name_suffix: str = ""
) -> dict[str, Path]:
    """Map file stem -> path for files with a known suffix; everything else goes to quarantine.

    With ``name_suffix`` (e.g. ``_mask``), stems must end with it and the key drops it.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} directory not found: {folder}")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            # AppleDouble (._x) and other hidden files, as shipped in the real Oxford archive.
            quarantine.append((str(path), "hidden file (e.g. macOS ._ metadata), not data"))
        elif not path.is_file():
            continue
        elif what == "mask" and path.suffix.lower() in (".jpg", ".jpeg"):
            quarantine.append(
                (str(path), "JPEG mask: lossy compression changes class values; save masks as PNG")
            )
        elif path.suffix.lower() not in suffixes:
            article = "an" if what == "image" else "a"
            quarantine.append(
                (str(path), f"not {article} {what} file (suffix {path.suffix or 'none'})")
            )
        elif name_suffix and not path.stem.endswith(name_suffix):
            quarantine.append((str(path), f"{what} name does not end with '{name_suffix}'"))
        else:
            stem = path.stem[: len(path.stem) - len(name_suffix)]
            if stem in found:
                quarantine.append((str(path), f"duplicate stem '{stem}' (also {found[stem]})"))
            else:
                found[stem] = path
    return found


def _rows(images: dict[str, Path], masks: dict[str, Path]) -> pd.DataFrame:
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
    return pd.DataFrame(rows, columns=COLUMNS)


def pair_by_stem(
    images_dir: Path, masks_dir: Path, *, mask_suffix: str = ""
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Pair ``images_dir/<stem>.*`` with ``masks_dir/<stem><mask_suffix>.*`` whatever the
    extensions; unpaired, stray and hidden files are returned as quarantine rows."""
    quarantine: list[tuple[str, str]] = []
    images = _files_by_stem(Path(images_dir), IMAGE_SUFFIXES, "image", quarantine)
    masks = _files_by_stem(Path(masks_dir), MASK_SUFFIXES, "mask", quarantine, mask_suffix)
    for stem in sorted(images.keys() - masks.keys()):
        quarantine.append((str(images[stem]), f"{NO_MASK} in {masks_dir}"))
    for stem in sorted(masks.keys() - images.keys()):
        quarantine.append((str(masks[stem]), f"{NO_IMAGE} in {images_dir}"))
    return _rows(images, masks), quarantine


def read_list(path: Path) -> list[str]:
    """Ids in a split list: the first field of each line; blank lines and # comments skipped.

    Works for Oxford's ``Name CLASS-ID SPECIES BREED-ID`` lines and VOC's one id per line.
    """
    ids = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            ids.append(fields[0])
    return ids


def _read_lists(
    root: Path, lists: dict[str, str | None], required: bool
) -> dict[str, tuple[Path, list[str]]]:
    """split name -> (list file, ids) for each list that exists (a missing one raises if
    ``required``, i.e. the user named it)."""
    found = {}
    for name, rel in lists.items():
        if not rel:
            continue
        path = root / rel
        if path.is_file():
            found[name] = (path, read_list(path))
        elif required:
            raise FileNotFoundError(f"split list for '{name}' not found: {path}")
        else:
            logger.info("no %s list at %s", name, path)
    return found


def index_oxford(root: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Index the Oxford-IIIT Pet layout (see :func:`index_dataset`)."""
    return index_dataset("oxford", root)


def index_dataset(
    layout: str,
    root: Path,
    *,
    images_dir: str | None = None,
    masks_dir: str | None = None,
    mask_suffix: str = "",
    split_lists: dict[str, str | None] | None = None,
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Index ``root`` according to ``layout`` ('oxford', 'voc' or 'folder').

    ``images_dir``/``masks_dir`` default to the layout's (:data:`LAYOUT_DIRS`), ``split_lists``
    (``{"trainval": file, "test": file}`` relative to ``root``) to the layout's
    (:data:`LAYOUT_LISTS`; a layout's own list may be absent, a list named here must exist).
    Returns the pairs (``official_split`` is "trainval", "test" or "" for pairs in no list) and
    the quarantine rows (file, problem).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown dataset layout '{layout}'; valid: {list(LAYOUTS)}")
    root = Path(root)
    default_images, default_masks = LAYOUT_DIRS[layout]
    images_path = root / (images_dir or default_images)
    masks_path = root / (masks_dir or default_masks)
    lists = _read_lists(root, split_lists or LAYOUT_LISTS[layout], required=bool(split_lists))
    listed = {i: name for name, (_, ids) in lists.items() for i in ids}

    quarantine: list[tuple[str, str]] = []
    images = _files_by_stem(images_path, IMAGE_SUFFIXES, "image", quarantine)
    masks = _files_by_stem(masks_path, MASK_SUFFIXES, "mask", quarantine, mask_suffix)
    unannotated = 0
    for stem in sorted(images.keys() - masks.keys()):
        if layout == "voc" and stem not in listed:
            unannotated += 1  # a detection-only VOC image, not a lost pair
        else:
            quarantine.append((str(images[stem]), f"{NO_MASK} in {masks_path}"))
    for stem in sorted(masks.keys() - images.keys()):
        quarantine.append((str(masks[stem]), f"{NO_IMAGE} in {images_path}"))
    if unannotated:
        logger.info(
            "%d images in %s have no mask and are in no split list: not used (VOC ships more "
            "images than segmentation masks)",
            unannotated,
            images_path,
        )
    for name, (path, ids) in lists.items():
        for i in ids:
            if i not in images and i not in masks:
                quarantine.append((str(path), f"{LISTED_MISSING} '{i}' (split {name})"))

    frame = _rows(images, masks)
    frame["official_split"] = [listed.get(i, "") for i in frame["id"]]
    if layout == "oxford":
        frame["group"] = frame["id"].str.rsplit("_", n=1).str[0]
    unlisted = int((frame["official_split"] == "").sum())
    if lists and unlisted:
        logger.warning(
            "%d pairs are in none of the split lists %s: they join the train/val pool",
            unlisted,
            sorted(str(p) for p, _ in lists.values()),
        )
    return frame, quarantine
