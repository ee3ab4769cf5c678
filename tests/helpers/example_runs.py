"""Running the example configs of config/examples/ at tiny scale, shared by the example tests.

:func:`tiny` shrinks only an example's scale (1 epoch, 32-64 px, few images, no pretrained
weights, CPU, small resources, a tiny stand-in encoder); :func:`run_example` writes it over the
example in a copy of the workflow and runs ``snakemake --configfile config/examples/<name>.yaml``
there, as a user would. The architecture, loss, class weights, augmentation, layout and remap
table stay as shipped, and :func:`check_outputs` requires the checkpoint to show them. The data builders derive the
examples' datasets from ``../shared/data`` (read-only, never copied into the repo).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from segpipe.params import tracked

from helpers.masks import save_palette_mask
from helpers.repo import REPO, TINY_MODEL, snakemake

EXAMPLES = REPO / "config" / "examples"
NAMES = [
    "unet_7class_grayscale",
    "oxford_pets_mobilenetv2",
    "membrane_mini_unet",
    "membrane_mobilenet_unet",
    "membrane_unet_augment",
    "voc_vgg16_unet",
]
COMPARISONS = ["compare_membrane_unets", "compare_class_imbalance", "compare_camvid_scale"]
CROSS_VALIDATED = ["membrane_5fold"]
RULES = ["download", "remap", "split", "preprocess", "train", "predict", "evaluate", "report"]

# CamVid ids (SegNet order) -> the 7 classes of example 1; 11 (void) -> None.
CAMVID_TO_7 = {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 1, 7: 1, 8: 5, 9: 6, 10: 6, 11: None}
# CamVid ids -> Pascal VOC ids for example 5: car, person, bicycle; the rest background.
CAMVID_TO_VOC = {8: 7, 9: 15, 10: 2, 11: 255}
SMALL = (96, 72)  # CamVid's 480x360, downscaled 5x by the tests


def load_example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text(encoding="utf-8"))


# Tiny timm encoders that stand in for the examples' own (a few hundred thousand parameters at
# encoder depth 3 with config/test.yaml's 16-8-4 decoder): the same stand-in for an encoder in
# every example, distinct stand-ins for the encoders of one example, so runs that differ in their
# encoder still differ. The examples' own models are built (not trained) by
# test_examples.py::test_every_example_model_builds.
STAND_INS = {
    "tu-resnet18": "tu-resnet10t",
    "resnet18": "tu-resnet10t",
    "resnet34": "tu-resnet10t",
    "vgg13_bn": "tu-resnet10t",
    "vgg16": "tu-resnet10t",
    "mobilenet_v2": "tu-lcnet_035",
}
MODEL_SIZE = ("encoder_depth", "decoder_channels")


def _stand_ins(cfg: dict) -> dict[str, str]:
    """Each encoder the example names (base, experiments, grid) -> its tiny stand-in."""
    named = [cfg["train"]["encoder"]]
    for override in (cfg.get("experiments") or {}).values():
        named.append(((override or {}).get("train") or {}).get("encoder"))
    named += (cfg.get("grid") or {}).get("train.encoder", [])
    distinct = {name for name in named if name}
    missing = distinct - set(STAND_INS)
    assert not missing, f"give {sorted(missing)} a stand-in in STAND_INS"
    assert len({STAND_INS[name] for name in distinct}) == len(distinct), distinct
    return STAND_INS


def tiny_model(train: dict, stand_ins: dict[str, str]) -> None:
    """Make a train section (or a run's override of it) train a tiny stand-in, in place."""
    if "encoder" in train:
        train["encoder"] = stand_ins[train["encoder"]]
    if "encoder" in train or set(MODEL_SIZE) & set(train):
        train.update({key: TINY_MODEL[key] for key in MODEL_SIZE})


def tiny(cfg: dict, **dataset) -> dict:
    """The example at CI scale: epochs, sizes, batch, weights, device and resources change, and
    the model is a tiny stand-in of the same architecture (STAND_INS)."""
    cfg = copy.deepcopy(cfg)
    cfg["dataset"].update(dataset)
    stand_ins = _stand_ins(cfg)
    tiny_model(cfg["train"], stand_ins)
    for override in (cfg.get("experiments") or {}).values():
        tiny_model((override or {}).get("train") or {}, stand_ins)
    if "train.encoder" in (cfg.get("grid") or {}):
        cfg["grid"]["train.encoder"] = [stand_ins[e] for e in cfg["grid"]["train.encoder"]]
    cfg["train"].update(
        epochs=1,
        image_size=32,
        batch_size=4,
        encoder_weights=None,  # tests are offline (HF_HUB_OFFLINE=1)
        device="cpu",
        num_workers=0,
        warmup_epochs=0,
    )
    cfg["predict"]["batch_size"] = 8
    cfg["report"]["gallery_size"] = 1
    # One thread per job: two jobs run side by side on the 2 CI cores (the jobs are short and
    # mostly interpreter start-up).
    cfg["resources"] = {rule: {"threads": 1, "mem_mb": 500, "runtime": 10} for rule in RULES}
    return cfg


def run_example(work: Path, name: str, cfg: dict, *args: str) -> Path:
    """Write ``cfg`` as the example in ``work`` and run the whole workflow (or as ``args`` say,
    e.g. ``--until train``); return results/."""
    path = work / "config" / "examples" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    proc = snakemake(work, "--configfile", str(path.relative_to(work)), "--cores", "2", *args)
    log = work / "logs" / "remap" / "remap.log"
    assert proc.returncode == 0, (
        proc.stdout[-3000:]
        + proc.stderr[-6000:]
        + (log.read_text()[-3000:] if log.exists() else "")
    )
    return work / "results"


def check_outputs(results: Path, cfg: dict, n_quarantined: int = 0) -> None:
    """Predictions saved as images at the original size, metrics per class, the report with its
    quarantine section, and a checkpoint trained with exactly the configured options."""
    from segpipe.models.checkpoints import load_checkpoint

    run = results / "runs" / cfg["run_name"]
    test = pd.read_csv(results / "split" / "base" / "test.csv", dtype={"id": str})
    assert len(test) > 0
    for row in test.itertuples():
        with Image.open(run / "predict" / "test" / "masks" / f"{row.id}.png") as pred:
            assert pred.size == (row.width, row.height)
        overlay = run / "predict" / "test" / "overlays" / f"{row.id}.jpg"
        assert overlay.is_file() == (cfg.get("predict", {}).get("overlays") == "all"), overlay
    for split in ("val", "test"):
        metrics = yaml.safe_load((run / "evaluate" / split / "metrics.json").read_text())
        assert list(metrics["per_class"]) == cfg["classes"]
    quarantine = pd.read_csv(results / "remap" / "quarantine.csv")
    assert len(quarantine) == n_quarantined, quarantine
    html = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert cfg["report"]["title"] in html and 'id="data"' in html

    trained = load_checkpoint(run / "train" / "best.pt")["config"]
    assert trained["classes"] == cfg["classes"]
    for key, value in tracked("train", cfg["train"]).items():  # as the checkpoint records it
        if key == "augment":
            for option, amount in value.items():
                assert trained["train"]["augment"][option] == amount, option
            # nothing leaked in from config/config.yaml's augmentation
            assert all(
                amount == 0
                for option, amount in trained["train"]["augment"].items()
                if option not in value
            ), trained["train"]["augment"]
        else:
            assert trained["train"][key] == value, key


def check_comparison(results: Path, cfg: dict) -> None:
    """Each run of a comparison has its outputs and was trained with the base config plus its
    override; the comparison ranks them all and links their reports."""
    from segpipe.models.checkpoints import load_checkpoint

    runs = list(cfg["experiments"])
    for name, override in cfg["experiments"].items():
        run = results / "runs" / name
        for split in ("val", "test"):
            metrics = yaml.safe_load((run / "evaluate" / split / "metrics.json").read_text())
            assert list(metrics["per_class"]) == cfg["classes"]
        assert (run / "report" / "report.html").is_file()
        trained = load_checkpoint(run / "train" / "best.pt")["config"]["train"]
        options = {**cfg["train"], **(override or {}).get("train", {})}
        for key, value in tracked("train", options).items():  # as the checkpoint records it
            if key != "augment":
                assert trained[key] == value, (name, key)
    board = pd.read_csv(results / "compare" / "leaderboard.csv")
    assert sorted(board["run"]) == sorted(runs)
    assert board["val_miou"].is_monotonic_decreasing and board["selected"].sum() == 1
    html = (results / "compare" / "report.html").read_text(encoding="utf-8")
    assert all(f'href="../runs/{name}/report/report.html"' in html for name in runs)


# --------------------------------------------------------------------------- data builders


def camvid_pairs(shared: Path, split: str, n: int) -> list[tuple[Path, Path]]:
    images = sorted((shared / "camvid" / split).glob("*.png"))[:n]
    return [(p, shared / "camvid" / f"{split}annot" / p.name) for p in images]


def small_pair(image: Path, mask: Path) -> tuple[Image.Image, np.ndarray]:
    with Image.open(image) as img:
        rgb = img.convert("RGB").resize(SMALL, Image.BILINEAR)
    with Image.open(mask) as m:
        ids = np.asarray(m.resize(SMALL, Image.NEAREST))
    return rgb, ids


def build_camvid_7_grey(shared: Path, root: Path) -> list[Path]:
    """Example 1's data: JPEG images, 8-bit greyscale masks with one intensity per class."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lut = np.array([255 if c is None else 40 * c for c in CAMVID_TO_7.values()], dtype=np.uint8)
    sources = camvid_pairs(shared, "train", 8)
    for image, mask in sources:
        rgb, ids = small_pair(image, mask)
        rgb.save(root / "images" / f"{image.stem}.jpg", quality=95)
        Image.fromarray(lut[ids], mode="L").save(root / "masks" / f"{image.stem}.png")
    return [p for pair in sources for p in pair]


def build_camvid_voc(shared: Path, root: Path) -> list[Path]:
    """Example 5's data: a VOC tree (JPEGImages, palette SegmentationClass, ImageSets lists)."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    lut = np.zeros(256, dtype=np.uint8)
    for camvid, voc in CAMVID_TO_VOC.items():
        lut[camvid] = voc
    sources = []
    for split, list_name, n in (("train", "train", 7), ("val", "val", 3)):
        pairs = camvid_pairs(shared, split, n)
        for image, mask in pairs:
            rgb, ids = small_pair(image, mask)
            rgb.save(root / "JPEGImages" / f"{image.stem}.jpg", quality=95)
            save_palette_mask(root / "SegmentationClass" / f"{image.stem}.png", lut[ids])
        names = "\n".join(image.stem for image, _ in pairs)
        (root / "ImageSets" / "Segmentation" / f"{list_name}.txt").write_text(names + "\n")
        sources += [p for pair in pairs for p in pair]
    for image, _ in camvid_pairs(shared, "val", 5)[3:]:  # detection-only images, no mask
        small_pair(image, image)[0].save(root / "JPEGImages" / f"{image.stem}.jpg")
    return sources


def digest_files(paths: list[Path]) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
