"""Dataset layouts (Pascal VOC, plain folder pairs, a local Oxford copy) and mask kinds (class
ids, greyscale intensities, RGB colours, VOC palette with 255 = ignore), each on data the test
builds."""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from segpipe.data.dataset_layouts import SplitListError, index_dataset, pair_by_stem
from segpipe.data.remap import UnmappedValuesError, make_spec, remap_array, remap_dataset
from segpipe.data.split import split_dataset
from segpipe.data.synthetic import make_oxford_like
from segpipe.workflow.config import ConfigError, load_schema, validate_config

from helpers.masks import save_palette_mask
from helpers.repo import REPO, copy_workflow, planned_rules

SIZE = 24


def remap(root: Path, out: Path, **kwargs) -> pd.DataFrame:
    return remap_dataset(
        root, out / "masks", out / "index.csv", out / "quarantine.csv", threads=1, **kwargs
    )


def read(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


# --------------------------------------------------------------------------- Pascal VOC


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """A VOC-layout tree: 6 annotated images (4 train, 2 val), 3 detection-only images, palette
    masks with a 255 boundary."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    ids = [f"2007_00000{i}" for i in range(6)]
    for i, name in enumerate(ids):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE + 8, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{name}.jpg"
        )
        mask = np.zeros((SIZE, SIZE + 8), dtype=np.uint8)
        mask[4:12, 4:12] = 15 if i % 2 else 7  # person or car
        mask[3, 3:13] = 255  # object boundary
        save_palette_mask(root / "SegmentationClass" / f"{name}.png", mask)
    for i in range(3):  # VOC ships many images with no segmentation mask
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"2008_00010{i}.jpg"
        )
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    (lists / "trainval.txt").write_text("\n".join(ids) + "\n")
    return root


VOC_TABLE = {i: i for i in range(21)}


def test_voc_index_pairs_lists_and_detection_only_images(voc, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="segpipe")
    val = voc / "ImageSets/Segmentation/val.txt"
    val.write_text(val.read_text() + "2009_999999\n")
    frame, quarantine = index_dataset("voc", voc)
    assert len(frame) == 6
    assert frame.set_index("id")["official_split"].to_dict() == {
        "2007_000000": "trainval",
        "2007_000001": "trainval",
        "2007_000002": "trainval",
        "2007_000003": "trainval",
        "2007_000004": "test",
        "2007_000005": "test",
    }
    # The listed id without files is a quarantine row, which stops remap (the split would not
    # be the list's); detection-only images are only counted.
    problem = "line 3: id '2009_999999' matches no image/mask pair (split test)"
    assert quarantine == [(str(val), problem)]
    assert "3 images in" in caplog.text and "have no mask and are in no split list" in caplog.text
    with pytest.raises(SplitListError, match=re.escape(f"{val} {problem}")):
        remap(voc, tmp_path / "out", layout="voc", table=VOC_TABLE, ignore_value=255)


def test_voc_palette_indices_are_class_ids_and_255_is_ignored(voc, tmp_path):
    index = remap(
        voc,
        tmp_path / "out",
        layout="voc",
        table=VOC_TABLE,
        ignore_value=255,
    )
    mask = read(index.set_index("id").loc["2007_000001", "mask"])
    assert mask[5, 5] == 15 and mask[0, 0] == 0 and mask[3, 5] == 255
    split = split_dataset(
        index.assign(official_split=index["official_split"]),
        seed=0,
        val_fraction=0.25,
        test_fraction=0.2,
    )
    assert sorted(split["test"]["id"]) == ["2007_000004", "2007_000005"]  # VOC val = our test


def test_voc_without_ignore_value_names_255(voc, tmp_path):
    with pytest.raises(UnmappedValuesError, match=r"mask values \[255\] are not in remap.table"):
        remap(voc, tmp_path / "out", layout="voc", table=VOC_TABLE)


def test_voc_with_other_lists(voc, tmp_path):
    frame, _ = index_dataset(
        "voc", voc, split_lists={"trainval": "ImageSets/Segmentation/trainval.txt"}
    )
    assert set(frame["official_split"]) == {"trainval"}
    with pytest.raises(FileNotFoundError, match="split list for 'test' not found"):
        index_dataset("voc", voc, split_lists={"test": "ImageSets/Segmentation/test.txt"})


# --------------------------------------------------------------------------- plain folders


def test_folder_pairs_by_stem_whatever_the_extensions(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    pairs = {
        "a": (".jpg", ".png"),
        "b": (".PNG", ".bmp"),
        "c": (".tif", ".tiff"),
        "d": (".bmp", ".gif"),
        "e": (".webp", ".png"),
        "f.v2": (".jpeg", ".png"),
    }
    for stem, (image_ext, mask_ext) in pairs.items():
        Image.new("RGB", (8, 8), (1, 2, 3)).save(
            images / f"{stem}{image_ext}", format=Image.registered_extensions()[image_ext.lower()]
        )
        Image.new("L", (8, 8), 1).save(masks / f"{stem}{mask_ext}")
    frame, quarantine = pair_by_stem(images, masks)
    assert quarantine == []
    assert sorted(frame["id"]) == sorted(pairs)
    for row in frame.itertuples():
        assert (
            Path(row.image).suffix == pairs[row.id][0]
            and Path(row.raw_mask).suffix == pairs[row.id][1]
        )


def test_folder_with_mask_suffix(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{stem}.jpg")
        Image.new("L", (8, 8)).save(tmp_path / "masks" / f"{stem}_mask.png")
    Image.new("L", (8, 8)).save(tmp_path / "masks" / "c.png")
    frame, quarantine = index_dataset("folder", tmp_path, mask_suffix="_mask")
    assert list(frame["id"]) == ["a", "b"]
    assert quarantine == [
        (str(tmp_path / "masks" / "c.png"), "mask name does not end with '_mask'")
    ]


def test_folder_split_lists_are_optional(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lbl").mkdir()
    for i in range(6):
        Image.new("RGB", (8, 8)).save(tmp_path / "img" / f"{i}.png")
        Image.new("L", (8, 8)).save(tmp_path / "lbl" / f"{i}.png")
    frame, _ = index_dataset("folder", tmp_path, images_dir="img", masks_dir="lbl")
    assert set(frame["official_split"]) == {""}
    (tmp_path / "test.txt").write_text("# held out\n4\n5\n")
    (tmp_path / "train.txt").write_text("0\n1\n2\n3\n")
    frame, _ = index_dataset(
        "folder",
        tmp_path,
        images_dir="img",
        masks_dir="lbl",
        split_lists={"trainval": "train.txt", "test": "test.txt"},
    )
    assert frame.set_index("id")["official_split"].to_dict() == {
        "0": "trainval",
        "1": "trainval",
        "2": "trainval",
        "3": "trainval",
        "4": "test",
        "5": "test",
    }


def test_local_oxford_copy(tmp_path):
    make_oxford_like(tmp_path / "pets", n_images=16, min_size=32, max_size=40)
    frame, quarantine = index_dataset("oxford", tmp_path / "pets")
    assert quarantine == [] and len(frame) == 16
    assert set(frame["group"]) == {"Abyssinian", "beagle", "Bengal", "boxer"}
    assert set(frame["official_split"]) == {"trainval", "test"}


# --------------------------------------------------------------------------- mask kinds


def _pairs(root: Path, masks: list[Image.Image]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, mask in enumerate(masks):
        Image.new("RGB", mask.size, (50, 60, 70)).save(root / "images" / f"p{i}.jpg")
        mask.save(root / "masks" / f"p{i}.png")
    return root


def test_greyscale_intensities_map_to_classes(tmp_path):
    levels = [0, 40, 80, 120, 160, 200, 240]
    ids = np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 8  # 7 classes + unlabelled
    grey = np.where(ids < 7, np.take(levels + [0], ids), 255).astype(np.uint8)
    root = _pairs(tmp_path / "data", [Image.fromarray(grey, mode="L")])
    table = {v: k for k, v in enumerate(levels)}
    index = remap(root, tmp_path / "out", layout="folder", table=table, ignore_value=255)
    assert (read(index["mask"][0]) == np.where(ids < 7, ids, 255)).all()


def test_binary_membrane_mask(tmp_path):
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[::4] = 255
    root = _pairs(tmp_path / "data", [Image.fromarray(mask)])
    index = remap(root, tmp_path / "out", layout="folder", table={0: 0, 255: 1})
    assert (read(index["mask"][0]) == (mask == 255)).all()


COLORS = [
    {"color": [0, 0, 0], "class": 0},
    {"color": [128, 0, 0], "class": 1},
    {"color": [0, 128, 0], "class": 2},
    {"color": [255, 255, 255], "class": 255},  # ignored
]


def _colour_mask(extra: tuple[int, int, int] | None = None) -> np.ndarray:
    rgb = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    rgb[:8] = (128, 0, 0)
    rgb[8:16] = (0, 128, 0)
    rgb[16:, :4] = (255, 255, 255)
    if extra:
        rgb[-1, -2:] = extra
    return rgb


def test_rgb_colour_masks_map_through_the_colour_table(tmp_path):
    rgba = np.dstack([_colour_mask(), np.full((SIZE, SIZE), 255, np.uint8)])
    masks = [Image.fromarray(_colour_mask()), Image.fromarray(rgba, mode="RGBA")]
    root = _pairs(tmp_path / "data", masks)
    index = remap(root, tmp_path / "out", layout="folder", table={}, colors=COLORS)
    for path in index["mask"]:
        out = read(path)
        assert (out[:8] == 1).all() and (out[8:16] == 2).all()
        assert (out[16:, :4] == 255).all() and (out[16:, 4:] == 0).all()


def test_palette_masks_can_be_read_as_colours(tmp_path):
    ids = np.zeros((SIZE, SIZE), dtype=np.uint8)
    ids[:8] = 1  # VOC colour 1 = (128, 0, 0)
    ids[8:16] = 2  # (0, 128, 0)
    root = tmp_path / "data"
    _pairs(root, [Image.new("L", (SIZE, SIZE))])
    save_palette_mask(root / "masks" / "p0.png", ids)
    index = remap(root, tmp_path / "out", layout="folder", table={}, colors=COLORS)
    out = read(index["mask"][0])
    assert (out[:8] == 1).all() and (out[8:16] == 2).all() and (out[16:] == 0).all()


def test_unknown_colour_is_named(tmp_path):
    root = _pairs(tmp_path / "data", [Image.fromarray(_colour_mask(extra=(1, 2, 3)))])
    with pytest.raises(
        UnmappedValuesError, match=r"mask colours \[\[1, 2, 3\]\] are not in remap.colors"
    ):
        remap(root, tmp_path / "out", layout="folder", table={}, colors=COLORS)


def test_remap_array_and_spec():
    spec = make_spec({0: 0, 255: 1}, ignore_value=128)
    values = np.array([[0, 255, 128]])
    assert remap_array(values, spec).tolist() == [[0, 1, 255]]
    with pytest.raises(UnmappedValuesError, match=r"m.png: mask values \[7\]"):
        remap_array(np.array([[7]]), spec, source="m.png")
    with pytest.raises(ValueError, match="maps to two classes"):
        make_spec(None, colors=[{"color": [1, 1, 1], "class": 0}, {"color": [1, 1, 1], "class": 1}])


# --------------------------------------------------------------------------- config


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema(REPO / "config" / "schema.yaml")


def folder_config(**dataset) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["dataset"] = {"source": "folder", "root": "data", **dataset}
    return cfg


@pytest.mark.parametrize(
    "layout, images, masks",
    [
        ("folder", "images", "masks"),
        ("voc", "JPEGImages", "SegmentationClass"),
        ("oxford", "images", "annotations/trimaps"),
    ],
)
def test_layout_sets_the_default_directories(schema, layout, images, masks):
    cfg = validate_config(folder_config(layout=layout), schema)
    assert (cfg["dataset"]["images_dir"], cfg["dataset"]["masks_dir"]) == (images, masks)
    cfg = validate_config(folder_config(layout=layout, images_dir="img"), schema)
    assert cfg["dataset"]["images_dir"] == "img"


def test_unknown_layout_lists_the_valid_ones(schema):
    with pytest.raises(
        ConfigError,
        match=r"dataset.layout.*'cityscapes' is not one of \['folder', 'voc', 'oxford'\]",
    ):
        validate_config(folder_config(layout="cityscapes"), schema)


def test_colour_table_replaces_the_default_table(schema):
    cfg = folder_config()
    cfg["classes"] = ["a", "b"]
    cfg["evaluate"] = {"foreground_classes": [1]}
    cfg["remap"] = {"colors": [{"color": [0, 0, 0], "class": 0}, {"color": [9, 9, 9], "class": 1}]}
    out = validate_config(cfg, schema)
    assert out["remap"]["table"] == {}
    both = copy.deepcopy(cfg)
    both["remap"]["table"] = {0: 0}
    with pytest.raises(ConfigError, match="remap.table .* or remap.colors .*not both"):
        validate_config(both, schema)
    bad = copy.deepcopy(cfg)
    bad["remap"]["colors"][1]["class"] = 5
    with pytest.raises(ConfigError, match=r"remap.colors': colour \[9, 9, 9\] maps to class 5"):
        validate_config(bad, schema)
    short = copy.deepcopy(cfg)
    short["remap"]["colors"][1]["color"] = [9, 9]
    with pytest.raises(ConfigError, match="remap.colors.1.color"):
        validate_config(short, schema)


def test_decoder_channels_must_match_the_depth(schema):
    cfg = folder_config()
    cfg["train"].update(encoder_depth=3, decoder_channels=[64, 32])
    with pytest.raises(
        ConfigError,
        match="'train.decoder_channels' and 'train.encoder_depth': 2 decoder stages, but "
        "encoder_depth is 3",
    ):
        validate_config(cfg, schema)


@pytest.mark.slow
def test_command_line_colour_table_replaces_config_yaml_table(tmp_path):
    """config.yaml's trimap table must not leak into a 2-class colour-mask config (it would map to
    class 2 and fail validation), nor its rotation into an augmentation given whole."""
    work = copy_workflow(tmp_path / "work")
    root = _pairs(tmp_path / "data", [Image.fromarray(_colour_mask())])
    cfg = {
        "run_name": "colours",
        "dataset": {"source": "folder", "root": str(root), "name": "colour masks"},
        "classes": ["a", "b"],
        "remap": {"colors": [{"color": [128, 0, 0], "class": 1}]},
        "evaluate": {"foreground_classes": None},
        "report": {"title": "colour masks"},
        "train": {"augment": {"hflip": 0.5}, "image_size": 32, "epochs": 1, "batch_size": 2},
        "resources": {"train": {"mem_mb": 1000}},
    }
    (work / "config" / "colours.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_rules(
        work, "--configfile", "config/colours.yaml", "--cores", "1", "results/remap/index.csv"
    ) == {"remap": 1}


def test_source_only_options_are_dataset_options_of_known_sources() -> None:
    from segpipe.data.dataset_layouts import SOURCE_ONLY_OPTIONS
    from segpipe.workflow.config import load_schema

    from helpers.repo import REPO

    dataset = load_schema(REPO / "config" / "schema.yaml")["properties"]["dataset"]
    assert set(SOURCE_ONLY_OPTIONS) <= set(dataset["properties"])
    assert set(SOURCE_ONLY_OPTIONS.values()) <= set(dataset["properties"]["source"]["enum"])
