"""Every example config under config/examples/ runs end to end at tiny scale.

Each test loads an example, shrinks only its scale (1 epoch, 32-64 px, few images, no pretrained
weights, CPU, small resources), writes it over the example in a copy of the workflow and runs
``snakemake --configfile config/examples/<name>.yaml`` there, as a user would. The model,
loss, class weights, augmentation, layout and remap table stay as shipped, and the checkpoint
must show them. Data (``../shared/data``, read-only, never copied into the repo):

1. unet_7class_grayscale: CamVid pairs with the 12 ids grouped into 7 classes, stored by the
   test as greyscale intensities (0, 40, ... 240; void 255), images as JPEG, masks as PNG;
2. oxford_pets_mobilenetv2: the synthetic Oxford-layout dataset (no real Oxford in CI);
3. membrane_mini_unet, membrane_mobilenet_unet, membrane_5fold (5 folds and their ensemble) and
   4. membrane_unet_augment: the ISBI 2012 stack, read in place;
5. voc_vgg16_unet: a VOC-layout copy of CamVid the test builds (palette PNGs, 255 = void,
   ImageSets lists, detection-only images in JPEGImages).

No input file may change: every test compares the inputs' hashes before and after its run.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from test_faults import tree_digest
from test_layouts import save_palette_mask

from segpipe.config import load_schema, validate_config
from segpipe.experiments import expand_runs

from conftest import REPO, copy_workflow, planned_jobs, planned_rules, snakemake

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


def tiny(cfg: dict, **dataset) -> dict:
    """The example at CI scale: only epochs, sizes, batch, weights, device and resources change."""
    cfg = copy.deepcopy(cfg)
    cfg["dataset"].update(dataset)
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


def run_example(work: Path, name: str, cfg: dict) -> Path:
    """Write ``cfg`` as the example in ``work`` and run the whole workflow; return results/."""
    path = work / "config" / "examples" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    proc = snakemake(work, "--configfile", str(path.relative_to(work)), "--cores", "2")
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
    from segpipe.runtime import load_checkpoint

    run = results / "runs" / cfg["run_name"]
    test = pd.read_csv(results / "split" / "base" / "test.csv", dtype={"id": str})
    assert len(test) > 0
    for row in test.itertuples():
        with Image.open(run / "predict" / "test" / "masks" / f"{row.id}.png") as pred:
            assert pred.size == (row.width, row.height)
        assert (run / "predict" / "test" / "overlays" / f"{row.id}.jpg").is_file()
    for split in ("val", "test"):
        metrics = yaml.safe_load((run / "evaluate" / split / "metrics.json").read_text())
        assert list(metrics["per_class"]) == cfg["classes"]
    quarantine = pd.read_csv(results / "remap" / "quarantine.csv")
    assert len(quarantine) == n_quarantined, quarantine
    html = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert cfg["report"]["title"] in html and 'id="data"' in html

    trained = load_checkpoint(run / "train" / "best.pt")["config"]
    assert trained["classes"] == cfg["classes"]
    for key, value in cfg["train"].items():
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
    from segpipe.runtime import load_checkpoint

    runs = list(cfg["experiments"])
    for name, override in cfg["experiments"].items():
        run = results / "runs" / name
        for split in ("val", "test"):
            metrics = yaml.safe_load((run / "evaluate" / split / "metrics.json").read_text())
            assert list(metrics["per_class"]) == cfg["classes"]
        assert (run / "report" / "report.html").is_file()
        trained = load_checkpoint(run / "train" / "best.pt")["config"]["train"]
        for key, value in {**cfg["train"], **(override or {}).get("train", {})}.items():
            if key != "augment":
                assert trained[key] == value, (name, key)
    board = pd.read_csv(results / "compare" / "leaderboard.csv")
    assert sorted(board["run"]) == sorted(runs)
    assert board["val_miou"].is_monotonic_decreasing and board["selected"].sum() == 1
    html = (results / "compare" / "report.html").read_text(encoding="utf-8")
    assert all(f'href="../runs/{name}/report/report.html"' in html for name in runs)


# --------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", NAMES + COMPARISONS + CROSS_VALIDATED)
def test_example_is_a_complete_valid_config(name):
    schema = load_schema(REPO / "config" / "schema.yaml")
    raw = load_example(name)
    cfg = validate_config(raw, schema)
    # Complete: every section config/config.yaml sets is set, so nothing merges in from it.
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for section, value in default.items():
        assert section in raw, section
        if isinstance(value, dict) and section != "resources":
            assert set(value) <= set(raw[section]), section
    assert cfg["run_name"] == raw["run_name"]


def test_examples_reproduce_their_setups():
    one, two, mini, mobile, aug, voc = (load_example(n)["train"] for n in NAMES)
    ex1 = load_example("unet_7class_grayscale")
    assert len(ex1["classes"]) == 7 and one["image_size"] == 256 and one["loss"] == "ce"
    assert one["decoder_dropout"] > 0 and len(ex1["remap"]["table"]) == 7
    ex2 = load_example("oxford_pets_mobilenetv2")
    assert two["encoder"] == "mobilenet_v2" and two["image_size"] == 128
    assert two["class_weights"] == [2.0, 2.0, 1.0] and two["augment"] == {"hflip": 0.5}
    assert ex2["classes"] == ["pet", "background", "border"]
    assert mini["encoder_depth"] == 3 and mini["decoder_channels"] == [64, 32, 16]
    assert mobile["encoder"] == "mobilenet_v2"
    assert {"rotate", "translate", "shear", "scale", "hflip"} <= {
        k for k, v in aug["augment"].items() if v
    }
    ex5 = load_example("voc_vgg16_unet")
    assert voc["encoder"] == "vgg16" and voc["loss"] == "ce+dice"
    assert ex5["dataset"]["layout"] == "voc" and ex5["remap"]["ignore_value"] == 255


def test_comparisons_declare_their_runs():
    schema = load_schema(REPO / "config" / "schema.yaml")

    def runs(name: str) -> dict:
        raw = load_example(name)
        validate = lambda cfg: validate_config(cfg, schema)  # noqa: E731
        return {r.name: r.config["train"] for r in expand_runs(raw, validate(raw), validate)}

    membranes = runs("compare_membrane_unets")
    assert list(membranes) == ["mini-unet", "mobilenet-unet"]
    mini = validate_config(load_example("membrane_mini_unet"), schema)["train"]
    assert membranes["mini-unet"] == mini
    assert membranes["mobilenet-unet"]["encoder"] == "mobilenet_v2"
    assert membranes["mobilenet-unet"]["decoder_channels"] is None
    imbalance = runs("compare_class_imbalance")
    assert list(imbalance) == ["ce", "ce-weighted", "ce-dice", "focal"]
    assert [t["loss"] for t in imbalance.values()] == ["ce", "ce", "ce+dice", "focal"]
    assert len(imbalance["ce-weighted"]["class_weights"]) == 7
    assert imbalance["ce"]["class_weights"] is None
    base = load_example("unet_7class_grayscale")
    assert load_example("compare_class_imbalance")["classes"] == base["classes"]
    assert load_example("compare_class_imbalance")["remap"] == base["remap"]


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
    import hashlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def seven_classes(shared_data, tmp_path_factory) -> tuple[Path, Path]:
    """Example 1's data and one workflow copy for it and the class-imbalance comparison (same
    data and sizes: remap, split and preprocess run once)."""
    tmp = tmp_path_factory.mktemp("seven")
    data = tmp / "seven_classes"
    sources = build_camvid_7_grey(shared_data, data)
    before, source_digest = tree_digest(data), digest_files(sources)
    yield data, copy_workflow(tmp / "work")
    assert tree_digest(data) == before and digest_files(sources) == source_digest


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xdist_group("examples-seven-classes")
def test_example_1_seven_class_grayscale_unet(seven_classes):
    data, work = seven_classes
    cfg = tiny(load_example("unet_7class_grayscale"), root=str(data))
    results = run_example(work, "unet_7class_grayscale", cfg)
    check_outputs(results, cfg)
    # The intensities became the 7 class ids, void the ignore index.
    mask = np.asarray(Image.open(next((results / "remap" / "masks").iterdir())))
    assert set(np.unique(mask)) <= set(range(7)) | {255}


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xdist_group("examples-seven-classes")
def test_comparison_b_class_imbalance(seven_classes):
    data, work = seven_classes
    cfg = tiny(load_example("compare_class_imbalance"), root=str(data))
    check_comparison(run_example(work, "compare_class_imbalance", cfg), cfg)


@pytest.mark.slow
@pytest.mark.xdist_group("examples-oxford")
def test_example_2_oxford_pets_mobilenetv2(tmp_path):
    cfg = tiny(load_example("oxford_pets_mobilenetv2"))
    cfg["dataset"] = {
        "source": "synthetic",
        "name": "synthetic Oxford-layout pets",
        "synthetic": {"n_images": 16, "seed": 1, "min_size": 40, "max_size": 56},
    }
    results = run_example(copy_workflow(tmp_path / "work"), "oxford_pets_mobilenetv2", cfg)
    check_outputs(results, cfg)


@pytest.fixture(scope="module")
def isbi_work(tmp_path_factory) -> Path:
    """One workflow copy for the three ISBI examples: remap, split and preprocess (same data, same
    32 px size) run once and are shared; train, predict, evaluate and report rerun per example."""
    return copy_workflow(tmp_path_factory.mktemp("isbi"))


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xdist_group("examples-isbi")
@pytest.mark.parametrize(
    "name", ["membrane_mini_unet", "membrane_mobilenet_unet", "membrane_unet_augment"]
)
def test_examples_3_4_isbi_membranes(shared_data, isbi_work, name):
    isbi = shared_data / "isbi2012_membrane" / "train"
    before = tree_digest(isbi)
    cfg = tiny(load_example(name), root=str(isbi))
    results = run_example(isbi_work, name, cfg)
    check_outputs(results, cfg)
    index = pd.read_csv(results / "remap" / "index.csv")
    assert len(index) == 30 and set(index["width"]) == {512}
    assert tree_digest(isbi) == before


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xdist_group("examples-isbi")
def test_comparison_a_membrane_unets(shared_data, isbi_work):
    isbi = shared_data / "isbi2012_membrane" / "train"
    cfg = tiny(load_example("compare_membrane_unets"), root=str(isbi))
    check_comparison(run_example(isbi_work, "compare_membrane_unets", cfg), cfg)


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xdist_group("examples-isbi")
def test_example_3d_membrane_5_folds_and_their_ensemble(shared_data, isbi_work):
    """The shipped 5-fold example cuts its folds for real and plans one model per fold and their
    ensemble; training, the ensemble, rule crossval and the report's cross-validation section
    run end to end in tests/test_folds.py on the same code path."""
    isbi = shared_data / "isbi2012_membrane" / "train"
    shipped = load_example("membrane_5fold")
    mini = load_example("membrane_mini_unet")
    assert shipped["train"] == mini["train"] and shipped["split"]["folds"] == 5
    assert shipped["predict"]["ensemble"] == "folds"
    cfg = tiny(shipped, root=str(isbi))
    path = isbi_work / "config" / "examples" / "membrane_5fold.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    args = ("--configfile", str(path.relative_to(isbi_work)))
    proc = snakemake(isbi_work, *args, "--cores", "2", "--until", "folds")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    folds = isbi_work / "results" / "folds" / "base" / "k5"
    val = [pd.read_csv(folds / f"fold{i}" / "val.csv") for i in range(5)]
    assert sorted(len(v) for v in val) == [4, 5, 5, 5, 5]  # the 24 images after the test split
    pool = pd.concat(val)["id"]
    assert pool.is_unique and len(pool) == 24  # every image is in exactly one fold's val part

    planned = planned_rules(isbi_work, *args)
    assert planned["train"] == 5 and planned["crossval"] == 1 and planned["report"] == 1
    jobs = planned_jobs(isbi_work, *args)
    models = {w.get("model") for rule, w in jobs if rule == "predict"}
    run = cfg["run_name"]
    assert models == {f"{run}/fold{i}" for i in range(5)} | {f"{run}/ensemble"}, models


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xdist_group("examples-camvid-scale")
def test_comparison_c_camvid_squashed_against_kept_at_scale(shared_data, tmp_path):
    # The first 40 training scenes at their full 480 x 360, linked, not copied: the scale logic
    # sees real sizes; the run predicts 16 test and val scenes per model instead of 128.
    camvid = tmp_path / "camvid"
    for sub in ("train", "trainannot"):
        (camvid / sub).mkdir(parents=True)
    for image, mask in camvid_pairs(shared_data, "train", 40):
        (camvid / "train" / image.name).symlink_to(image)
        (camvid / "trainannot" / mask.name).symlink_to(mask)
    cfg = tiny(load_example("compare_camvid_scale"), root=str(camvid))
    scale = cfg["experiments"]["scale"]
    assert scale["train"]["resize"] == "keep_aspect" and scale["predict"]["mode"] == "sliding"
    scale["train"]["image_scale"] = 0.1  # 48 x 36 scenes: sliding 32 px windows over them
    results = run_example(copy_workflow(tmp_path / "work"), "compare_camvid_scale", cfg)
    check_comparison(results, cfg)
    assert (results / "preprocess" / "base" / "x0.1" / "test.npy").is_file()
    test = pd.read_csv(results / "split" / "base" / "test.csv")
    with Image.open(
        results / "runs" / "scale" / "predict" / "test" / "masks" / f"{test['id'][0]}.png"
    ) as m:
        assert m.size == (480, 360)


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.xdist_group("examples-voc")
def test_example_5_voc_vgg16_unet(shared_data, tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    sources = build_camvid_voc(shared_data, root)
    before, source_digest = tree_digest(root), digest_files(sources)
    cfg = tiny(load_example("voc_vgg16_unet"), root=str(root))
    results = run_example(copy_workflow(tmp_path / "work"), "voc_vgg16_unet", cfg)
    check_outputs(results, cfg)
    test = pd.read_csv(results / "split" / "base" / "test.csv")
    assert len(test) == 3  # VOC's val list is the test split
    remap_log = (results.parent / "logs" / "remap" / "remap.log").read_text()
    assert "2 images in" in remap_log and "have no mask and are in no split list" in remap_log
    assert tree_digest(root) == before and digest_files(sources) == source_digest
