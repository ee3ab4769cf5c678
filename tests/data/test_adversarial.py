"""An adversarial sweep of user inputs, each built by the test: file names (non-ASCII, Unicode
NFC vs NFD, spaces, a leading dash, braces, ``%``, commas and quotes, 200 characters, upper-case
and double extensions, two files of one stem), mask modes (1-bit, 32-bit, palette, RGB greyscale,
alpha, all ignored), image shapes (1x1, 2x300), and whole runs (a folder whose names hold spaces,
non-ASCII and braces; Snakemake killed with SIGKILL during remap and during train).

Each input either works correctly, or gets a one-line error naming the file and the problem, or a
quarantine row; never a traceback, never a silently wrong result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from segpipe.data.preprocess import preprocess_split
from segpipe.data.remap import UnmappedValuesError
from segpipe.data.split import MANIFEST_COLUMNS, write_split
from segpipe.evaluation.evaluate import evaluate_split
from segpipe.inference.predict_splits import PredictOptions, predict_split
from segpipe.io import read_table, write_csv

from helpers.checkpoints import untrained_checkpoint
from helpers.remap import run_remap
from helpers.repo import BIN, REPO, copy_workflow, planned_rules, snakemake

SIZE = 16
TABLE = {0: 0, 255: 1}  # binary masks: 0 background, 255 foreground
CLASSES = ["background", "foreground"]


def half(size: int = SIZE, high: int = 255, low: int = 0, dtype=np.uint8) -> np.ndarray:
    """A (size, size) mask: ``low`` on the left half, ``high`` on the right."""
    mask = np.full((size, size), low, dtype=dtype)
    mask[:, size // 2 :] = high
    return mask


def rgb(height: int = SIZE, width: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def folder(root: Path) -> tuple[Path, Path]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    return root / "images", root / "masks"


def add_pair(root: Path, image_name: str, mask_name: str | None = None, mask=None) -> None:
    """images/<image_name> (PNG or JPEG by its suffix) + masks/<mask_name> (a half mask)."""
    fmt = "JPEG" if Path(image_name).suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(rgb()).save(root / "images" / image_name, format=fmt)
    mask = Image.fromarray(half()) if mask is None else mask
    mask.save(root / "masks" / (mask_name or image_name), format="PNG")


def quarantine(out: Path) -> dict[str, str]:
    table = read_table(out / "quarantine.csv")
    return {
        f"{Path(f).parent.name}/{Path(f).name}": p
        for f, p in zip(table["file"], table["problem"], strict=True)
    }


# --------------------------------------------------------------------------- file names

NAMES = {
    "accent": "café",
    "cjk": "日本",
    "emoji": "🐱 cat",
    "space": "a b",
    "leading dash": "-a",
    "braces": "{x}",
    "percent": "50%",
    "comma": "a,b",
    "quotes": "q\"u'o",
    "long": "L" * 200,
    "double extension": "a.png",
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_odd_file_names_pair_and_keep_their_id(tmp_path, name):
    data = tmp_path / "data"
    folder(data)
    add_pair(data, f"{name}.png")
    add_pair(data, "ok.jpg", "ok.png")
    index, _ = run_remap(data, tmp_path / "out", table=TABLE, threads=1)
    assert sorted(index["id"]) == sorted([name, "ok"])
    assert read_table(tmp_path / "out" / "index.csv")["id"].tolist() == sorted([name, "ok"])
    mask = Path(index.set_index("id").loc[name, "mask"])
    assert mask.name == f"{name}.png"
    assert np.asarray(Image.open(mask)).tolist() == (half() > 0).astype(np.uint8).tolist()
    assert quarantine(tmp_path / "out") == {}


def test_upper_case_extensions(tmp_path):
    data = tmp_path / "data"
    folder(data)
    add_pair(data, "up.JPG", "up.PNG")
    add_pair(data, "ok.png")
    index, _ = run_remap(data, tmp_path / "out", table=TABLE, threads=1)
    assert sorted(index["id"]) == ["ok", "up"]
    assert quarantine(tmp_path / "out") == {}


def test_image_and_mask_names_in_nfc_and_nfd_pair(tmp_path):
    """macOS writes names decomposed (NFD): 'café' of the image and of the mask, or of a split
    list line, differ in their bytes but are one name."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    data = tmp_path / "data"
    folder(data)
    add_pair(data, f"{nfc}.png", f"{nfd}.png")
    add_pair(data, f"{nfd} 2.png", f"{nfc} 2.png")
    add_pair(data, "ok.png")
    (data / "test.txt").write_text(f"{nfd}\n")  # a list written by `ls` on macOS
    index, _ = run_remap(
        data, tmp_path / "out", table=TABLE, threads=1, split_lists={"test": "test.txt"}
    )
    assert sorted(index["id"]) == sorted([nfc, f"{nfc} 2", "ok"])
    assert index.set_index("id").loc[nfc, "official_split"] == "test"
    assert quarantine(tmp_path / "out") == {}


def test_nfc_and_nfd_twins_are_named_escaped_and_said_to_differ_in_normalisation(tmp_path):
    """Two images 'café.png', one written NFC and one NFD, are one stem: the one not used is
    quarantined with a problem that shows both names escaped (they print alike) and says why."""
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    data = tmp_path / "data"
    folder(data)
    add_pair(data, f"{nfc}.png")
    add_pair(data, "ok.png")
    Image.fromarray(rgb()).save(data / "images" / f"{nfd}.png")
    if len(list((data / "images").iterdir())) < 3:
        pytest.skip("a file system that folds NFC and NFD names into one file")
    run_remap(data, tmp_path / "out", table=TABLE, threads=1)
    ((file, problem),) = quarantine(tmp_path / "out").items()
    assert file in (f"images/{nfc}.png", f"images/{nfd}.png")
    assert problem.startswith(f"duplicate stem '{nfc}': ")
    assert problem.endswith(
        "(rename it to use it too); the two names differ only in Unicode "
        "normalisation: 'cafe\\u0301.png' (NFD) and 'caf\\xe9.png' (NFC)"
    )


def test_two_images_of_one_stem_use_one_and_list_the_other(tmp_path):
    """a.jpg + a.png + masks/a.png: the first by name is used, the other is a quarantine row
    saying which file is used (a stray file, not a lost pair: the fraction is not touched)."""
    data = tmp_path / "data"
    folder(data)
    add_pair(data, "a.jpg", "a.png")
    Image.fromarray(rgb(seed=1)).save(data / "images" / "a.png")
    Image.fromarray(half()).save(data / "masks" / "a.bmp")
    index, log = run_remap(
        data, tmp_path / "out", table=TABLE, threads=1, max_quarantine_fraction=0.0
    )
    row = index.set_index("id").loc["a"]
    assert (Path(row["image"]).name, Path(row["raw_mask"]).name) == ("a.jpg", "a.bmp")
    used = "is used for it, this file is not (rename it to use it too)"
    assert quarantine(tmp_path / "out") == {
        "images/a.png": f"duplicate stem 'a': a.jpg {used}",
        "masks/a.png": f"duplicate stem 'a': a.bmp {used}",
    }
    assert any("duplicate stem 'a'" in message for _, message in log.lines)


def test_double_extension_of_the_image_only_is_an_unpaired_file(tmp_path):
    """images/a.png.png + masks/a.png: stems 'a.png' and 'a' differ, both are listed."""
    data = tmp_path / "data"
    folder(data)
    add_pair(data, "a.png.png", "a.png")
    add_pair(data, "ok.png")
    index, _ = run_remap(data, tmp_path / "out", table=TABLE, threads=1, max_quarantine_fraction=1)
    assert index["id"].tolist() == ["ok"]
    rows = quarantine(tmp_path / "out")
    assert rows["images/a.png.png"].startswith("no mask for this image")
    assert rows["masks/a.png"].startswith("no image for this mask")


# --------------------------------------------------------------------------- mask modes


def _palette(values: np.ndarray, colours: list[tuple[int, int, int]]) -> Image.Image:
    """A palette mask of indices ``values`` whose palette holds ``colours`` (index i: colour i)."""
    img = Image.fromarray(values.astype(np.uint8), mode="L").convert("P")
    img.putpalette([c for colour in colours for c in colour] + [0] * (768 - 3 * len(colours)))
    return img


def _with_alpha(img: Image.Image, mode: str) -> Image.Image:
    alpha = Image.fromarray(np.where(half() > 0, 255, 0).astype(np.uint8))
    out = img.convert(mode)
    out.putalpha(alpha)
    return out


PALETTE = _palette(half(high=1), [(0, 0, 0), (200, 10, 10)])
WORKING_MASKS = {
    # name: (mask image, file suffix, table): every one reads as half() mapped to 0/1.
    "1-bit": (Image.fromarray(half() > 0), ".png", TABLE),
    "RGB with R=G=B": (Image.fromarray(np.dstack([half()] * 3)), ".png", TABLE),
    "RGBA": (_with_alpha(Image.fromarray(np.dstack([half()] * 3)), "RGBA"), ".png", TABLE),
    "LA": (_with_alpha(Image.fromarray(half()), "LA"), ".png", TABLE),
    "PA (palette + alpha)": (_with_alpha(PALETTE, "PA"), ".tif", {0: 0, 1: 1}),
    "palette with transparency": (PALETTE.copy(), ".png", {0: 0, 1: 1}),
    "16-bit": (Image.fromarray(half(dtype=np.uint16, high=1000)), ".png", {0: 0, 1000: 1}),
    "32-bit > 255": (
        Image.fromarray(half(dtype=np.int32, high=70000, low=1000), mode="I"),
        ".tif",
        {1000: 0, 70000: 1},
    ),
    "palette by index": (PALETTE, ".png", {0: 0, 1: 1}),
}
WORKING_MASKS["palette with transparency"][0].info["transparency"] = 0


@pytest.mark.parametrize("kind", WORKING_MASKS)
def test_mask_modes_read_as_their_values(tmp_path, kind):
    mask, suffix, table = WORKING_MASKS[kind]
    data = tmp_path / "data"
    folder(data)
    Image.fromarray(rgb()).save(data / "images" / "m.png")
    mask.save(data / "masks" / f"m{suffix}")
    index, _ = run_remap(data, tmp_path / "out", table=table, threads=1)
    out = np.asarray(Image.open(index.set_index("id").loc["m", "mask"]))
    assert out.tolist() == (half() > 0).astype(np.uint8).tolist()
    assert quarantine(tmp_path / "out") == {}


def test_palette_mask_by_colour(tmp_path):
    data = tmp_path / "data"
    folder(data)
    add_pair(data, "m.png", mask=PALETTE)
    colors = [{"color": [0, 0, 0], "class": 0}, {"color": [200, 10, 10], "class": 1}]
    index, _ = run_remap(data, tmp_path / "out", table=None, colors=colors, threads=1)
    out = np.asarray(Image.open(index.set_index("id").loc["m", "mask"]))
    assert out.tolist() == (half() > 0).astype(np.uint8).tolist()


HINTS = {
    # name: (mask, table, the unmapped values and what the message adds)
    "palette, a table of colours' greys": (
        PALETTE,
        TABLE,
        "mask values [1] are not in remap.table [0, 255] (add them to the table, set "
        "remap.ignore_value, or remap.unmapped: ignore/quarantine); a palette mask: the values "
        "are palette indices, not colours (index: colour 1: [200, 10, 10]); to map its colours "
        "use remap.colors",
    ),
    "1-bit, a table of 0/1": (
        Image.fromarray(half() > 0),
        {0: 0, 1: 1},
        "mask values [255] are not in remap.table [0, 1] (add them to the table, set "
        "remap.ignore_value, or remap.unmapped: ignore/quarantine); a 1-bit mask: its pixels "
        "read as 0 and 255",
    ),
    "16-bit, an 8-bit table": (
        Image.fromarray(half(dtype=np.uint16, high=65535)),
        TABLE,
        "mask values [65535] are not in remap.table [0, 255] (add them to the table, set "
        "remap.ignore_value, or remap.unmapped: ignore/quarantine); a I;16 mask: values are "
        "read as stored, not scaled to 8 bits",
    ),
}


@pytest.mark.parametrize("kind", HINTS)
def test_unmapped_values_of_unusual_masks_say_what_the_values_are(tmp_path, kind):
    """A viewer shows a palette mask's colours and a 1-bit mask's 0/1, not the values remap
    reads: the error names the file, the values and what they are."""
    mask, table, message = HINTS[kind]
    data = tmp_path / "data"
    folder(data)
    add_pair(data, "m.png", mask=mask)
    with pytest.raises(UnmappedValuesError) as err:
        run_remap(data, tmp_path / "out", table=table, threads=1)
    assert f"{data / 'masks' / 'm.png'}: {message}" in str(err.value)


def test_all_ignore_mask_is_quarantined(tmp_path):
    data = tmp_path / "data"
    folder(data)
    add_pair(data, "ignored.png", mask=Image.fromarray(np.full((SIZE, SIZE), 128, np.uint8)))
    add_pair(data, "ok.png")
    index, _ = run_remap(data, tmp_path / "out", table=TABLE, ignore_value=128, threads=1)
    assert index["id"].tolist() == ["ok"]
    assert quarantine(tmp_path / "out") == {
        "masks/ignored.png": "no labelled pixel: every mask value [128] maps to ignore"
    }


# --------------------------------------------------------------------------- downstream


def test_odd_names_and_shapes_survive_split_preprocess_predict_and_evaluate(tmp_path):
    """1x1, 2x300 and 300x2 images and ids with commas, quotes, braces and 200 characters:
    manifests, the array, predictions at each image's own size, per-image metrics."""
    data = tmp_path / "data"
    folder(data)
    shapes = {"1x1": (1, 1), "wide 2x300": (2, 300), "tall 300x2": (300, 2)}
    for name, (height, width) in shapes.items():
        Image.fromarray(rgb(height, width)).save(data / "images" / f"{name}.png")
        mask = np.zeros((height, width), np.uint8)
        mask[height // 2 :, width // 2 :] = 255
        Image.fromarray(mask).save(data / "masks" / f"{name}.png")
    odd = ["a,b", "q\"u'o", "{x}", "L" * 200, "-a", "50%"]
    for name in odd:
        add_pair(data, f"{name}.png")
    out = tmp_path / "out"
    _, log = run_remap(data, out, table=TABLE, threads=1)
    summary = next(m for _, m in log.lines if m.startswith("dataset summary"))
    assert "; width 1..300, height 1..300" in summary  # not 'max 300x300', which none is
    manifests = {s: out / f"{s}.csv" for s in ("train", "val", "test")}
    write_split(
        str(out / "index.csv"),
        {k: str(v) for k, v in manifests.items()},
        str(out / "classes.csv"),
        class_names=CLASSES,
        seed=0,
        val_fraction=0.4,
        test_fraction=0.4,
    )
    parts = [read_table(m)["id"].tolist() for m in manifests.values()]
    assert sorted(sum(parts, [])) == sorted([*shapes, *odd])
    # Every pair through preprocess, predict and evaluate: the whole index as one manifest.
    test = read_table(out / "index.csv")[MANIFEST_COLUMNS]
    write_csv(manifests["test"], test)
    array = preprocess_split(manifests["test"], out / "test.npy", image_size=32)
    threads = torch.get_num_threads()
    checkpoint = untrained_checkpoint(out / "model.pt", CLASSES)
    predict_split(
        checkpoint, manifests["test"], array, out / "pred", PredictOptions(threads=1, device="cpu")
    )
    torch.set_num_threads(threads)
    for row in test.to_dict("records"):
        predicted = Image.open(out / "pred" / "masks" / f"{row['id']}.png")
        assert predicted.size == (int(row["width"]), int(row["height"]))
    evaluate_split(
        manifests["test"],
        out / "pred",
        metrics_json=out / "eval" / "metrics.json",
        per_class_csv=out / "eval" / "per_class.csv",
        confusion_csv=out / "eval" / "confusion.csv",
        confusion_normalized_csv=out / "eval" / "confusion_normalized.csv",
        per_image_csv=out / "eval" / "per_image.csv",
        classes=CLASSES,
    )
    assert read_table(out / "eval" / "per_image.csv")["id"].tolist() == test["id"].tolist()


# --------------------------------------------------------------------------- whole runs


def folder_workflow(tmp_path: Path, root: Path, names: list[str], size: int = 24, **train) -> Path:
    """The workflow in tmp_path/work, config/run.yaml: config/test.yaml on the binary folder
    dataset ``root`` of ``names`` (``size`` px), 1 epoch unless ``train`` says otherwise."""
    folder(root)
    for i, name in enumerate(names):
        Image.fromarray(rgb(size, size, seed=i)).save(root / "images" / f"{name}.png")
        Image.fromarray(half(size)).save(root / "masks" / f"{name}.png")
    work = copy_workflow(tmp_path / "work")
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["dataset"] = {"source": "folder", "root": str(root), "layout": "folder", "name": "odd"}
    cfg["classes"] = CLASSES
    cfg["remap"] = {"table": TABLE}
    cfg["evaluate"] = {"foreground_classes": [1]}
    cfg["train"].update({"epochs": 1, **train})
    cfg["split"].update(val_fraction=0.25, test_fraction=0.25)
    (work / "config" / "run.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return work


ODD_NAMES = [
    "a b",
    "café",
    "日本",
    "{x}",
    "{y}z",
    "g h {i}",
    "-dash",
    "50%",
    "c,d",
    "e'f",
    "🐱",
    "k",
]


@pytest.mark.slow
def test_pipeline_on_a_folder_whose_names_hold_spaces_non_ascii_and_braces(tmp_path):
    """Braces are Snakemake's wildcards: in the dataset root and in file names they must be
    neither wildcards (WildcardError) nor escaped into missing files; an edit of such a file
    still reruns remap."""
    root = tmp_path / "my data {v1} é"
    work = folder_workflow(tmp_path, root, ODD_NAMES)
    cfg = yaml.safe_load((work / "config" / "run.yaml").read_text())
    cfg["classes"] = ["back ground", "fore {ground}"]  # a param of split, train, evaluate, report
    (work / "config" / "run.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    proc = snakemake(work, "--configfile", "config/run.yaml", "--cores", "2", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    results = work / "results"
    report = results / "runs" / "ci-tiny" / "report" / "report.html"
    assert "fore {ground}" in report.read_text()
    assert read_table(results / "remap" / "index.csv")["id"].tolist() == sorted(ODD_NAMES)
    assert planned_rules(work, "--configfile", "config/run.yaml") == {}
    # The newest file, {x}.png, cannot be remap's input: its modification time is in its params.
    os.utime(root / "masks" / "{x}.png")
    assert planned_rules(work, "--configfile", "config/run.yaml").get("remap") == 1


def _run_until(work: Path, ready, timeout: float = 300) -> subprocess.Popen:
    """Start Snakemake (up to the trained model) in its own process group; return once
    ``ready()`` holds."""
    proc = subprocess.Popen(
        [str(BIN / "snakemake"), "results/runs/ci-tiny/train/best.pt"]
        + ["--configfile", "config/run.yaml", "--cores", "2"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "snakemake ended before the job to kill started"
        assert time.monotonic() < deadline, "the job to kill did not start in time"
        time.sleep(0.02)
    return proc


@pytest.mark.slow
def test_a_rerun_never_trains_into_the_resume_folder_of_a_trainer_left_running(tmp_path):
    """SIGKILL to Snakemake alone during training leaves its trainer running (its own
    process). After --unlock, the rerun's train job stops at once, naming the resume folder and
    the trainer's pid, instead of writing the same checkpoints beside it."""
    # A trainer that cannot finish before the test ends it (the finally below): with 500 epochs
    # of these 16 tiny pairs it finished first on a loaded 2-core CPU, and left no lock to find.
    names = [f"p{i}" for i in range(16)]
    work = folder_workflow(tmp_path, tmp_path / "data", names, epochs=100_000)
    target = ("--cores", "2", "results/runs/ci-tiny/train/best.pt")
    target += ("--configfile", "config/run.yaml")
    resume = work / "results/runs/ci-tiny/train/resume"
    proc = _run_until(work, (resume / "last.pt").is_file)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # Stopped, the trainer keeps its flock on the lock and leaves the CPUs to the rerun (gone
    # already, the assertions below say what that means).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGSTOP)
    holder = (resume / "train.lock").read_text().split()[1]
    try:
        assert snakemake(work, *target, "--unlock").returncode == 0
        rerun = snakemake(work, *target)
        assert rerun.returncode != 0
        log = (work / "logs" / "train" / "ci-tiny.log").read_text()
        assert (
            "resume folder 'results/runs/ci-tiny/train/resume' is in use by another training "
            f"(process {holder} on host"
        ) in log
        assert "Traceback" not in log
    finally:  # the trainer left running; gone already, it must not hide a failure above
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_kill_9_of_snakemake_during_remap_and_train_then_unlock_and_rerun(tmp_path):
    """SIGKILL to Snakemake's whole process group (the OOM killer, a lost terminal) in the middle
    of remap, then of train: each rerun first needs `snakemake --unlock` (Snakemake says so);
    then the same command finishes: the jobs cut off rerun (rerun-incomplete, from the
    profile), the killed remap's temporary folder is removed, the killed training resumes from
    its last epoch."""
    names = [f"p{i}" for i in range(16)]
    work = folder_workflow(tmp_path, tmp_path / "data", names, size=256, epochs=3)
    # Options taking many values (--quiet, --configfile) last, the target after --cores.
    target = ("--cores", "2", "results/runs/ci-tiny/train/best.pt")
    target += ("--configfile", "config/run.yaml")
    remap_writing = lambda: any((work / "results" / "remap").glob(".masks.*.tmp"))  # noqa: E731
    last_epoch_saved = (work / "results/runs/ci-tiny/train/resume/last.pt").is_file
    for ready in (remap_writing, last_epoch_saved):
        proc = _run_until(work, ready)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        locked = snakemake(work, *target)
        assert locked.returncode != 0
        assert "--unlock" in locked.stderr + locked.stdout
        assert snakemake(work, *target, "--unlock").returncode == 0

    rerun = snakemake(work, *target, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-6000:]
    assert not list((work / "results" / "remap").glob(".masks.*"))
    assert sorted(read_table(work / "results" / "remap" / "index.csv")["id"]) == sorted(names)
    log = (work / "logs" / "train" / "ci-tiny.log").read_text()
    assert "resuming from results/runs/ci-tiny/train/resume/last.pt at the end of epoch" in log
    assert planned_rules(work, *target) == {}
