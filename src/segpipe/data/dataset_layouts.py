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
(file, problem) that the remap step writes out and the report shows. A split-list line that names
no pair is a quarantine row too, and it stops the remap step (:func:`check_split_lists`): the
image it meant would otherwise silently join another split.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import logging
import os
import stat
import unicodedata
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segpipe.logs import UserError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm"}
MASK_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".gif"}
COLUMNS = ["id", "image", "raw_mask", "group", "official_split"]
LAYOUT_DIRS = {
    "oxford": ("images", "annotations/trimaps"),
    "voc": ("JPEGImages", "SegmentationClass"),
    "folder": ("images", "masks"),
}
"""Image and mask directories of each layout, relative to the dataset root."""
LAYOUTS = tuple(LAYOUT_DIRS)
"""The layouts' names (dataset.layout, ``segpipe verify --layout``)."""
LAYOUT_LISTS: dict[str, dict[str, str | None]] = {
    "oxford": {"trainval": "annotations/trainval.txt", "test": "annotations/test.txt"},
    "voc": {
        "trainval": "ImageSets/Segmentation/train.txt",
        "test": "ImageSets/Segmentation/val.txt",
    },
    "folder": {},
}
"""Official split lists of each layout (split name -> file relative to the root)."""
SPLIT_LISTS = ("trainval", "test")
"""The names a split list may have (dataset.split_lists, ``segpipe verify --split-list``)."""

# The dataset options that only one source reads: the download sources (oxford_pets, synthetic)
# read the oxford layout, not ``root`` or ``layout``; the others' archives or generator settings
# are ignored. A run's summary leaves out what its source does not read.
SOURCE_ONLY_OPTIONS = {
    "root": "folder",
    "layout": "folder",
    "urls": "oxford_pets",
    "synthetic": "synthetic",
}

NO_MASK = "no mask for this image"
NO_IMAGE = "no image for this mask"
LISTED_MISSING = "matches no image/mask pair"
_LOST_PAIR = (NO_MASK, NO_IMAGE, "its image ", "its mask ")


class SplitListError(UserError, ValueError):
    """A split list names an id that matches no image or mask: the split cannot be trusted."""


class DatasetPathError(UserError, FileNotFoundError):
    """A folder or split list that the dataset options name does not exist."""


def is_lost_pair(problem: str) -> bool:
    """Whether a quarantine problem from indexing stands for a lost image/mask pair.

    Stray files (hidden files, non-image files such as the ``.mat`` files in the real Oxford
    archive, duplicate stems) are listed in the quarantine but are not pairs: they do not count
    towards ``remap.max_quarantine_fraction``.
    """
    return problem.startswith(_LOST_PAIR) or _is_unmatched_list_line(problem)


def _is_unmatched_list_line(problem: str) -> bool:
    """Whether a quarantine problem is a split-list line whose id matches no pair."""
    return problem.startswith("line ") and LISTED_MISSING in problem


HIDDEN_FOLDERS = ("__MACOSX",)
"""Folders that are archive or tool metadata although their names do not start with a dot."""


@dataclass
class _Listing:
    """What one image or mask directory holds: usable files by stem, and files that name a stem
    but cannot be read (a broken symbolic link...), by stem, with the reason."""

    found: dict[str, Path]
    unusable: dict[str, tuple[Path, str]]


def _files_by_stem(
    folder: Path,
    suffixes: set[str],
    what: str,
    quarantine: list,
    name_suffix: str = "",
) -> _Listing:
    """Map file stem -> path for files with a known suffix; everything else goes to quarantine.

    With ``name_suffix`` (e.g. ``_mask``), stems must end with it and the key drops it. Only the
    top level is read: every file below a sub-folder is a quarantine row (:func:`_nested_rows`).
    A missing ``folder`` is an error naming the option that places it below dataset.root.
    """
    if not folder.is_dir():
        raise DatasetPathError(f"{what} directory not found: {folder} ({_option(what)})")
    listing = _Listing({}, {})
    for path in sorted(folder.iterdir()):
        problem = _entry_problem(path, folder, what, suffixes, name_suffix, quarantine)
        stem = nfc(path.stem[: len(path.stem) - len(name_suffix)])
        if problem is None and stem in listing.found:
            problem = _duplicate_problem(stem, listing.found[stem], path)
        elif problem is None:
            listing.found[stem] = path
            continue
        if problem:
            quarantine.append((str(path), problem))
            if _names_stem(path, suffixes, name_suffix) and problem.startswith(UNUSABLE_FILES):
                listing.unusable.setdefault(stem, (path, problem))
    return listing


def _names_stem(path: Path, suffixes: set[str], name_suffix: str) -> bool:
    return path.suffix.lower() in suffixes and path.stem.endswith(name_suffix)


def _entry_problem(
    path: Path, folder: Path, what: str, suffixes: set[str], name_suffix: str, quarantine: list
) -> str | None:
    """Why a directory entry is not read ("" when rows were added for it already), None for a
    file to pair."""
    hidden = path.name.startswith(".") or path.name in HIDDEN_FOLDERS
    if hidden and path.is_dir() and not path.is_symlink():
        return "hidden folder (e.g. .git, __MACOSX), not data: not read"
    if path.name.startswith("."):
        # AppleDouble (._x) and other hidden files, as shipped in the real Oxford archive.
        return "hidden file (e.g. macOS ._ metadata), not data"
    if path.is_dir() and not path.is_symlink():
        quarantine += _nested_rows(path, folder, what)
        return ""
    special = _special_file(path)
    if special:
        return special
    if what == "mask" and path.suffix.lower() in (".jpg", ".jpeg"):
        return "JPEG mask: lossy compression changes class values; save masks as PNG"
    if path.suffix.lower() not in suffixes:
        article = "an" if what == "image" else "a"
        return f"not {article} {what} file (suffix {path.suffix or 'none'})"
    if name_suffix and not path.stem.endswith(name_suffix):
        return f"{what} name does not end with '{name_suffix}'"
    return None


BROKEN_LINK = "broken symbolic link"
LINK_LOOP = "symbolic link loop"
LINK_TO_FOLDER = "symbolic link to a folder"
NOT_REGULAR = "not a regular file"
UNUSABLE_FILES = (BROKEN_LINK, LINK_LOOP, LINK_TO_FOLDER, NOT_REGULAR, "cannot be read")
"""How the problems of entries that cannot be read as files begin."""
_FILE_TYPES = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _special_file(path: Path) -> str | None:
    """Why an entry that is not a sub-folder cannot be read as a file (None: a regular file or a
    symbolic link to one). Nothing is opened: a FIFO would block the reader."""
    link = f" (points to {os.readlink(path)})" if path.is_symlink() else ""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"{BROKEN_LINK}{link}: its target does not exist"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{LINK_LOOP}{link}"
        return f"cannot be read ({exc.strerror}){link}"
    if stat.S_ISDIR(mode):
        return f"{LINK_TO_FOLDER}{link}: segpipe reads only files, not linked folders"
    if not stat.S_ISREG(mode):
        kind = _FILE_TYPES.get(stat.S_IFMT(mode), "a special file")
        return f"{NOT_REGULAR} ({kind}){link}: not read"
    return None


def _option(what: str) -> str:
    return "dataset.images_dir" if what == "image" else "dataset.masks_dir"


def _nested_rows(sub: Path, folder: Path, what: str) -> list[tuple[str, str]]:
    """A quarantine row for every file below the sub-folder ``sub`` of ``folder``, naming the
    folder it is in; a hidden folder inside is one row, not walked. Links are not followed."""
    rows = []
    for parent, dirs, files in os.walk(sub):
        for name in sorted(dirs):
            if name.startswith(".") or name in HIDDEN_FOLDERS:
                path = Path(parent, name)
                if not path.is_symlink():
                    dirs.remove(name)
                    rows.append(
                        (str(path), "hidden folder (e.g. .git, __MACOSX), not data: not read")
                    )
        dirs.sort()
        links = [d for d in dirs if Path(parent, d).is_symlink()]
        relative = Path(parent).relative_to(folder).as_posix()
        for name in sorted(files + links):
            rows.append((str(Path(parent, name)), nested_problem(relative, folder, what)))
    return rows


def nested_problem(relative: str, folder: Path, what: str) -> str:
    """The quarantine problem of a file in the sub-folder ``relative`` of ``folder``."""
    return (
        f"{IN_SUB_FOLDER} '{relative}/': segpipe reads only the top level of {folder}; move it "
        f"up or point {_option(what)} at the sub-folder"
    )


IN_SUB_FOLDER = "in sub-folder"


def _warn_nested(quarantine: list[tuple[str, str]]) -> None:
    """One warning per sub-folder whose files are not read, with their count."""
    counts = Counter(
        problem.split("': segpipe ", 1)[0] + "'"
        for _, problem in quarantine
        if problem.startswith(IN_SUB_FOLDER)
    )
    for where, n in sorted(counts.items()):
        logger.warning(
            "%d file(s) %s not read: segpipe reads only the top level of the image and mask "
            "directories (see the quarantine list)",
            n,
            where,
        )


def nfc(name: str) -> str:
    """A file stem or list id in Unicode NFC: macOS writes names decomposed (NFD), so the
    ``café`` of an image and the ``café`` of its mask or a split list may differ in their bytes."""
    return unicodedata.normalize("NFC", name)


def normalisation_twins(first: str, second: str) -> str:
    """For two names that are one in Unicode NFC but differ as written (a name written NFC and
    its twin written NFD, as macOS writes names), which print alike: both escaped, with their
    forms ("'caf\\xe9.png' (NFC) and 'cafe\\u0301.png' (NFD)"); "" for any other two names."""
    if first == second or nfc(first) != nfc(second):
        return ""
    return f"{_escaped_form(first)} and {_escaped_form(second)}"


def _escaped_form(name: str) -> str:
    form = next((f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, name)), "mixed")
    return f"{ascii(name)} ({form})"


def _duplicate_problem(stem: str, used: Path, path: Path) -> str:
    problem = (
        f"duplicate stem '{stem}': {used.name} is used for it, this file is not "
        "(rename it to use it too)"
    )
    if twins := normalisation_twins(used.name, path.name):
        problem += f"; the two names differ only in Unicode normalisation: {twins}"
    return problem


def _partner_problem(what: str, listing: _Listing, stem: str) -> str:
    """The problem of a file whose partner (its ``what``) exists but cannot be read."""
    path, problem = listing.unusable[stem]
    return f"{UNUSABLE_PARTNER[what]} {path.name} cannot be read: {problem}"


UNUSABLE_PARTNER = {"image": "its image", "mask": "its mask"}


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
    extensions (the folder layout without split lists, see :func:`index_dataset`); unpaired,
    stray and hidden files are returned as quarantine rows."""
    return index_dataset(
        "folder",
        Path(),
        images_dir=str(images_dir),
        masks_dir=str(masks_dir),
        mask_suffix=mask_suffix,
    )


@dataclass(frozen=True)
class ListEntry:
    """One id line of a split list: line number (from 1), id, and whether the id names files."""

    line: int
    id: str
    found: bool


def _decode_list(path: Path) -> str:
    """A split list's text: UTF-8 with or without a byte-order mark, or UTF-16 with one (what
    Windows Notepad calls "Unicode"), in Unicode NFC as file stems are (:func:`nfc`); other
    encodings raise :class:`SplitListError`."""
    data = path.read_bytes()
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    try:
        return nfc(data.decode("utf-16" if utf16 else "utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise SplitListError(
            f"{path}: split list is not UTF-8 text ({exc.reason} at byte {exc.start}): "
            "save it as UTF-8"
        ) from None


def list_entries(
    path: Path, known: Collection[str] = (), *, first_field: bool = False
) -> list[ListEntry]:
    """The id lines of a split list, as ordinary editors save it.

    The file is read as UTF-8 with or without a byte-order mark (or UTF-16 with one), with LF,
    CRLF or CR line ends. A line's id is the first of these that names an image or a mask (a
    stem in ``known``): the line as written, the line without leading and trailing spaces and
    tabs, and the line's first whitespace-separated field. So ``my image 1`` is the id of ``my image 1.png``, and Oxford's
    ``Abyssinian_1 1 1 1`` (``Name CLASS-ID SPECIES BREED-ID``) is ``Abyssinian_1``. Blank lines
    and ``#`` comments (a line starting with ``#`` that names no file) are skipped.

    A line that names no file gives ``found=False`` and, as its id, the stripped line (its first
    field with ``first_field``, for lists of ``Name other-columns`` lines such as Oxford's).
    """
    known = set(known)
    text = _decode_list(Path(path))
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        fields = stripped.split()
        match = next((c for c in (line, stripped, *fields[:1]) if c in known), None)
        if match is not None:
            entries.append(ListEntry(number, match, True))
        elif fields and not stripped.startswith("#"):
            entries.append(ListEntry(number, fields[0] if first_field else stripped, False))
    return entries


def _read_lists(
    root: Path,
    lists: dict[str, str | None],
    required: bool,
    known: Collection[str] = (),
    first_field: bool = False,
) -> dict[str, tuple[Path, list[ListEntry]]]:
    """split name -> (list file, entries) for each list that exists (a missing one raises if
    ``required``, i.e. the user named it)."""
    found = {}
    for name, rel in lists.items():
        if not rel:
            continue
        path = root / rel
        if path.is_file():
            found[name] = (path, list_entries(path, known, first_field=first_field))
        elif required:
            raise DatasetPathError(f"split list for '{name}' not found: {path}")
        else:
            logger.info("no %s list at %s", name, path)
    return found


def _listed_splits(lists: dict[str, tuple[Path, list[ListEntry]]]) -> dict[str, str]:
    """id -> split name for the listed ids that name files. An id in the test list and in
    another list is a test id, with a warning: test images must not leak into training."""
    listed: dict[str, str] = {}
    for name, (_, entries) in lists.items():
        for entry in (e for e in entries if e.found):
            other = listed.get(entry.id)
            if other not in (None, name):
                logger.warning("%r is in both the %s and the %s list", entry.id, other, name)
            if other != "test":
                listed[entry.id] = name
    return listed


def check_split_lists(quarantine: list[tuple[str, str]]) -> None:
    """Raise :class:`SplitListError` when a split list names an id that matches no pair.

    Such a line usually means the list and the files disagree in a way the eye misses (a
    byte-order mark in the middle of a file, a zero-width or no-break space, a typo): the image
    meant by it would silently join another split, e.g. a test image join training. Ids are
    shown with ``repr()`` so that invisible characters appear as escapes.
    """
    rows = [f"{file} {problem}" for file, problem in quarantine if _is_unmatched_list_line(problem)]
    if rows:
        more = f"\n  ... and {len(rows) - 20} more" if len(rows) > 20 else ""
        raise SplitListError(
            f"{len(rows)} split-list line(s) name no image/mask pair:\n  "
            + "\n  ".join(rows[:20])
            + more
            + "\nids are shown quoted, invisible characters escaped (e.g. '\\ufeff', '\\u200b'):"
            " fix the lines or delete them"
        )


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
    the quarantine rows (file, problem). List lines are read by :func:`list_entries`; a line
    that names no image or mask is a row ``(list, "line N: id '...' matches no image/mask
    pair (split S)")``, which :func:`check_split_lists` turns into an error.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown dataset layout '{layout}'; valid: {list(LAYOUTS)}")
    root = Path(root)
    if not root.is_dir():
        problem = "is a file, not a dataset folder" if root.exists() else "no such folder"
        raise DatasetPathError(f"dataset.root {root}: {problem}")
    default_images, default_masks = LAYOUT_DIRS[layout]
    images_path = root / (images_dir or default_images)
    masks_path = root / (masks_dir or default_masks)

    quarantine: list[tuple[str, str]] = []
    image_files = _files_by_stem(images_path, IMAGE_SUFFIXES, "image", quarantine)
    mask_files = _files_by_stem(masks_path, MASK_SUFFIXES, "mask", quarantine, mask_suffix)
    _warn_nested(quarantine)
    images, masks = image_files.found, mask_files.found
    lists = _read_lists(
        root,
        split_lists or LAYOUT_LISTS[layout],
        required=bool(split_lists),
        known=images.keys() | masks.keys(),
        first_field=layout == "oxford",
    )
    listed = _listed_splits(lists)
    unannotated = 0
    for stem in sorted(images.keys() - masks.keys()):
        if stem in mask_files.unusable:
            quarantine.append((str(images[stem]), _partner_problem("mask", mask_files, stem)))
        elif layout == "voc" and stem not in listed:
            unannotated += 1  # a detection-only VOC image, not a lost pair
        else:
            quarantine.append((str(images[stem]), f"{NO_MASK} in {masks_path}"))
    for stem in sorted(masks.keys() - images.keys()):
        if stem in image_files.unusable:
            quarantine.append((str(masks[stem]), _partner_problem("image", image_files, stem)))
        else:
            quarantine.append((str(masks[stem]), f"{NO_IMAGE} in {images_path}"))
    if unannotated:
        logger.info(
            "%d images in %s have no mask and are in no split list: not used (VOC ships more "
            "images than segmentation masks)",
            unannotated,
            images_path,
        )
    for name, (path, entries) in lists.items():
        quarantine += [
            (str(path), f"line {e.line}: id {e.id!r} {LISTED_MISSING} (split {name})")
            for e in entries
            if not e.found
        ]

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


@dataclass(frozen=True)
class DatasetFiles:
    """The files that indexing a dataset reads, with their sizes and modification times.

    Rule remap is rerun when any of them changes, through two cheap signs (the DAG of a
    7,349-pair dataset stays as fast to build as that of a small one):

    - :meth:`newest` is remap's input: Snakemake reruns a job whose input is newer than its
      outputs, and the newest file is newer whenever any file was edited or added since;
    - :meth:`fingerprint` is one of remap's params: the names and sizes of all files, which
      change when a file is removed or renamed (neither changes a timestamp).

    Timestamps stay out of the fingerprint, so files restored with new timestamps (``dvc pull``,
    a copy) and then re-stamped rerun nothing.
    """

    root: str
    entries: tuple[tuple[str, int, int], ...]  # (path, size, mtime_ns), sorted by path

    def newest(self) -> list[str]:
        """The most recently modified file, as a one-element list (empty when there are none)."""
        files = [e for e in self.entries if e[2]]
        if not files:
            return []
        return [max(files, key=lambda e: (e[2], e[0]))[0]]

    def fingerprint(self) -> str:
        """'<n> files, sha256:<hash of relative names and sizes>'."""
        digest = hashlib.sha256()
        for path, size, _ in self.entries:
            digest.update(f"{os.path.relpath(path, self.root)}\t{size}\n".encode())
        return f"{len(self.entries)} files, sha256:{digest.hexdigest()[:16]}"


def dataset_files(
    layout: str,
    root: str | Path,
    *,
    images_dir: str | None = None,
    masks_dir: str | None = None,
    split_lists: dict[str, str | None] | None = None,
) -> DatasetFiles:
    """Every entry that indexing ``root`` reads or lists in its quarantine: the image and mask
    directories' files (hidden ones too), the files in their sub-folders (quarantined, not read),
    hidden folders (one entry each, their contents not walked), links and special files, and the
    split lists that exist. A missing directory gives no files here; remap then fails, naming it.

    Entries that are not regular files (a broken link, a FIFO, a hidden folder) have mtime 0: they
    count in the fingerprint but are never :meth:`DatasetFiles.newest`, remap's input.
    """
    root = Path(root)
    default_images, default_masks = LAYOUT_DIRS[layout]
    entries: list[tuple[str, int, int]] = []
    for sub in (images_dir or default_images, masks_dir or default_masks):
        if (root / sub).is_dir():
            entries += _tree_entries(root / sub)
    for rel in (split_lists or LAYOUT_LISTS[layout]).values():
        if rel and (root / rel).is_file():
            entries.append(_entry(root / rel))
    return DatasetFiles(str(root), tuple(sorted(entries)))


def _entry(path: Path) -> tuple[str, int, int]:
    """(path, size, mtime_ns) of a regular file (or a link to one); (path, 0, 0) for anything
    else, which cannot be an input of a rule."""
    try:
        info = os.stat(path)
    except OSError:
        return str(path), 0, 0
    if not stat.S_ISREG(info.st_mode):
        return str(path), 0, 0
    return str(path), info.st_size, info.st_mtime_ns


def _tree_entries(folder: Path) -> list[tuple[str, int, int]]:
    """:func:`_entry` of everything below ``folder`` but folders, which are walked (not through
    links); a hidden folder is one entry of its own, not walked."""
    entries = []
    for parent, dirs, files in os.walk(folder):
        for name in list(dirs):
            path = Path(parent, name)
            if path.is_symlink() or name.startswith(".") or name in HIDDEN_FOLDERS:
                dirs.remove(name)
                entries.append((str(path), 0, 0))
        entries += [_entry(Path(parent, name)) for name in files]
    return entries
