"""The planning rules on fabricated fingerprints: each rule's decision and the figure it names."""

from __future__ import annotations

import re

import pytest

from segpipe.planning import rules
from segpipe.planning.rules import ClassFigures, PlanError, Target

from helpers.fabricated import fingerprint, value


def planned_labels(fp: dict) -> rules.Labels:
    return rules.labels(fp, rules.ignored_value(fp))


# ----------------------------------------------------------------------------- labels


def test_binary_masks_become_two_classes_and_255_is_a_class():
    plan = planned_labels(fingerprint([value(0, 0.22), value(255, 0.78)]))
    assert plan.table == {0: 0, 255: 1} and plan.ignore_value is None
    assert plan.classes == ["class_0", "class_255"]
    assert "binary 0/255 masks" in plan.why["remap.table"]


def test_a_trimap_is_remapped_from_1():
    plan = planned_labels(fingerprint([value(1, 0.3), value(2, 0.6), value(3, 0.1)]))
    assert plan.table == {1: 0, 2: 1, 3: 2} and plan.ignore_value is None
    assert "class ids 1..3" in plan.why["remap.table"]


def test_voc_palette_indices_with_a_255_boundary_ignore_255():
    values = [value(i, 0.04) for i in range(21)] + [value(255, 0.05)]
    fp = fingerprint(values, palette={"0": [0, 0, 0], "255": [224, 224, 192]})
    ignore = rules.ignored_value(fp)
    assert ignore.value == 255 and "beside class ids 0..20" in ignore.why
    plan = rules.labels(fp, ignore)
    assert len(plan.classes) == 21 and 255 not in plan.table
    assert "palette masks" in plan.why["remap.table"]


def test_255_beside_grey_levels_is_a_level_not_ignored():
    """{0, 128, 255}: not class ids, so 255 is a class like the others."""
    fp = fingerprint([value(0, 0.5), value(128, 0.3), value(255, 0.2)])
    assert rules.ignored_value(fp).value is None
    assert planned_labels(fp).table == {0: 0, 128: 1, 255: 2}


def test_grey_levels_map_in_sorted_order():
    fp = fingerprint([value(v, 1 / 7) for v in range(0, 241, 40)])
    plan = planned_labels(fp)
    assert plan.table == {v: i for i, v in enumerate(range(0, 241, 40))}
    assert "7 grey levels" in plan.why["remap.table"]


def test_colour_masks_plan_colours_and_no_table():
    fp = fingerprint([value([0, 0, 0], 0.6), value([128, 0, 0], 0.4)], encoding="colours")
    plan = planned_labels(fp)
    assert plan.table == {} and plan.ignore_value is None
    assert plan.colors == [{"color": [0, 0, 0], "class": 0}, {"color": [128, 0, 0], "class": 1}]
    assert plan.classes == ["class_0_0_0", "class_128_0_0"]


@pytest.mark.parametrize(
    "per_mask, distinct, message",
    [
        (200, 256, "256 distinct values, 200 in the median mask: intensity images"),
        (3, 300, "300 distinct values, 3 in the median mask"),
    ],
)
def test_intensity_masks_are_refused_with_the_figures(per_mask, distinct, message):
    fp = fingerprint([value(v, 1 / 3) for v in range(3)], distinct_per_mask=per_mask)
    fp["masks"]["distinct"] = distinct
    with pytest.raises(PlanError, match=message):
        rules.intensity_check(fp)


def test_mixed_colour_and_grey_masks_are_refused():
    with pytest.raises(PlanError, match="mix RGB colour masks and single-channel"):
        planned_labels(fingerprint(encoding="mixed"))


def test_masks_of_one_value_are_refused():
    with pytest.raises(PlanError, match="a single class value"):
        planned_labels(fingerprint([value(7, 1.0)]))


def test_a_given_table_must_cover_every_value_found():
    fp = fingerprint([value(0, 0.5), value(1, 0.3), value(9, 0.2)])
    with pytest.raises(PlanError, match=r"values \[9\] that the given remap table"):
        rules.given_labels(fp, {"table": {0: 0, 1: 1}})
    plan = rules.given_labels(fp, {"table": {0: 0, 1: 1}, "ignore_value": 9})
    assert plan.classes == ["class_0", "class_1"] and plan.ignore_value == 9


def test_given_colours_name_the_colour_missing():
    fp = fingerprint([value([1, 2, 3], 0.5), value([4, 5, 6], 0.5)], encoding="colours")
    with pytest.raises(PlanError, match=r"colours \[\[4, 5, 6\]\]"):
        rules.given_labels(fp, {"colors": [{"color": [1, 2, 3], "class": 0}]})


# ----------------------------------------------------------------------------- pairs


@pytest.mark.parametrize(
    "pairs, unusable, found, message",
    [
        (0, 0, 0, "no image/mask pairs found"),
        (1, 0, 1, "1 usable pair"),
        (4, 0, 4, "4 usable pair"),
        (10, 11, 21, "11 of 21 pairs are unusable"),
    ],
)
def test_too_few_or_mostly_unusable_pairs_are_refused(pairs, unusable, found, message):
    fp = fingerprint(pairs=pairs, unusable=unusable, found=found)
    with pytest.raises(PlanError, match=message):
        rules.usable_pairs(fp)


def test_a_refusal_names_the_problem_count_and_the_first_problem():
    fp = fingerprint(pairs=10, unusable=11, found=21)
    fp["quarantine"] = [
        {"file": f"data/cells/masks/{i}.png", "problem": "mask 8x8 and image 9x8 differ in size"}
        for i in range(11)
    ]
    first = "11 problem(s), the first: data/cells/masks/0.png: mask 8x8 and image 9x8 differ"
    with pytest.raises(PlanError, match=re.escape(f"unusable (52.4%); {first}")):
        rules.usable_pairs(fp)


def test_some_unusable_pairs_raise_the_quarantine_limit_above_them():
    assert rules.usable_pairs(fingerprint(pairs=100)).value == 0.1
    chosen = rules.usable_pairs(fingerprint(pairs=80, unusable=20))
    assert chosen.value == 0.25 and "20 of 100 pairs read are unusable" in chosen.why


# ----------------------------------------------------------------------------- geometry


def figures(*widths: float | None, shares=None) -> list[ClassFigures]:
    shares = shares or [1 / len(widths)] * len(widths)
    return [
        ClassFigures(f"c{i}", s, 1.0, w)
        for i, (w, s) in enumerate(zip(widths, shares, strict=True))
    ]


def test_square_images_with_broad_structures_are_squashed_to_the_size_limit():
    fp = fingerprint(width=512, height=512)
    geometry = rules.geometry(fp, figures(40, 60), Target(max_size=256))
    assert (geometry.resize, geometry.image_size) == ("squash", 256)
    assert "'c0' 5th-percentile width 40 px -> 20 px at 256" in geometry.why["train.image_size"]


def test_thin_structures_keep_the_scale_that_keeps_them_and_crop():
    """Membranes 3 px wide: halving them leaves 1.5 px, so 512² images are kept at 0.67 and
    trained on 256 crops (squashing to 256 would be 0.5)."""
    geometry = rules.geometry(fingerprint(), figures(3, 30), Target(max_size=256))
    assert geometry.resize == "keep_aspect"
    assert geometry.image_scale == 0.67 and geometry.image_size == 256
    assert "squashing to 256 would thin 'c0'" in geometry.why["train.resize"]


def test_whole_images_stay_within_twice_the_input_size_even_thinning_structures():
    """CamVid's poles are 1 px wide at 480x360: kept at full scale they would need whole
    480x360 images for every validation; with 64-px inputs they are kept at 128 px at most."""
    fp = fingerprint(width=480, height=360)
    geometry = rules.geometry(fp, figures(1, 40), Target(max_size=64))
    assert geometry.resize == "keep_aspect" and geometry.image_scale == 0.26
    assert geometry.image_size == 64
    assert "whole images at most 2x --max-size 64" in geometry.why["train.image_scale"]
    assert rules.geometry(fp, figures(1, 40), Target(max_size=256)).image_scale == 1.0


def test_wide_images_keep_their_aspect():
    fp = fingerprint(width=480, height=360)
    geometry = rules.geometry(fp, figures(40, 40), Target(max_size=128))
    assert geometry.resize == "keep_aspect" and "not near-square" in geometry.why["train.resize"]
    assert geometry.image_scale == 0.27 and geometry.image_size == 128


def test_images_of_many_sizes_are_not_squashed():
    fp = fingerprint(width=400, height=400, spread_ratio=2.0)
    assert rules.geometry(fp, figures(40, 40), Target()).resize == "keep_aspect"


def test_small_images_are_not_enlarged_and_sizes_stay_multiples_of_32():
    fp = fingerprint(width=20, height=20)
    geometry = rules.geometry(fp, figures(5, 5), Target())
    assert geometry.image_size == 32 and geometry.resize == "squash"
    for side in (33, 47, 48, 100, 1000):
        fp = fingerprint(width=side, height=side)
        size = rules.geometry(fp, figures(50, 50), Target(max_size=512)).image_size
        assert size % 32 == 0 and 32 <= size <= 512


def test_a_geometry_shrinks_a_stride_at_a_time_down_to_32():
    geometry = rules.Geometry("squash", 96, 1.0, {"train.resize": "x", "train.image_size": "y"})
    smaller = geometry.shrunk()
    assert smaller is not None and smaller.image_size == 64
    assert "96 did not fit a batch of 2" in smaller.why["train.image_size"]
    assert rules.Geometry("squash", 32, 1.0, {}).shrunk() is None


@pytest.mark.parametrize("size, depth", [(32, 3), (64, 4), (96, 4), (128, 5), (1024, 5)])
def test_the_encoder_is_as_deep_as_keeps_a_4_pixel_bottleneck(size, depth):
    net = rules.network(size, 100)
    assert net["train.encoder_depth"].value == depth
    channels = net["train.decoder_channels"].value
    assert channels is None if depth == 5 else len(channels) == depth


def test_large_datasets_get_the_deeper_encoder():
    assert rules.network(256, 999)["train.encoder"].value == "resnet18"
    assert rules.network(256, 1000)["train.encoder"].value == "resnet34"


# ----------------------------------------------------------------------------- batch, time


def trial(batch, peak, step=0.5, **extra):
    return {"batch": batch, "measured": True, "peak_mb": peak, "step_s": step, **extra}


def test_the_batch_is_the_largest_measured_within_the_budget():
    trials = [trial(2, 1000), trial(4, 1500), trial(8, 2500)]
    chosen = rules.batch_size(trials, Target(memory_mb=2000), cap=16)
    assert chosen.value == 4 and "8 measured 2500 MB" in chosen.why
    assert rules.batch_size(trials, Target(memory_mb=9000), cap=16).value == 8
    assert rules.batch_size(trials, Target(memory_mb=9000), cap=6).value == 4


def test_a_predicted_or_out_of_memory_batch_does_not_count():
    trials = [trial(2, 1000), {"batch": 4, "measured": False, "predicted_mb": 5000}]
    chosen = rules.batch_size(trials, Target(memory_mb=2000), cap=16)
    assert chosen.value == 2 and "4 predicted 5000 MB" in chosen.why
    oom = [trial(2, None, oom=True)]
    assert rules.batch_size(oom, Target(memory_mb=2000), cap=16) is None
    assert rules.batch_size([trial(2, 2001)], Target(memory_mb=2000), cap=16) is None


def test_the_batch_cap_is_5_percent_of_the_training_pairs_within_2_and_max_batch():
    assert rules.batch_cap(19, Target()) == 2
    assert rules.batch_cap(400, Target()) == 20
    assert rules.batch_cap(10_000, Target(max_batch=32)) == 32
    assert rules.probe_batches(20) == [2, 4, 8, 16, 20]
    assert rules.probe_batches(2) == [2]


def test_epochs_come_from_the_step_budget_within_bounds():
    assert rules.epochs(20, 2, 10, 1, None).value == 200  # 10 steps an epoch: capped
    assert rules.epochs(1000, 10, 10, 1, None).value == 25  # 2500 / 100
    assert rules.epochs(10**6, 32, 10, 1, None).value == 5  # at least 5


def test_a_wall_clock_budget_caps_the_epochs_for_every_model():
    chosen = rules.epochs(1000, 10, 60, 5, hours=1.0)
    assert chosen.value == 12 and "--hours 1 (5 model(s))" in chosen.why
    assert rules.epochs(1000, 10, 3600, 1, hours=0.1).value == 1


def test_steps_drop_the_incomplete_last_batch_as_training_does():
    assert rules.steps_per_epoch(17, 16) == 1
    assert rules.steps_per_epoch(33, 16) == 2
    assert rules.steps_per_epoch(3, 16) == 1


# ----------------------------------------------------------------------------- loss, data


def test_balanced_classes_train_with_cross_entropy_and_dice_unweighted():
    chosen = rules.loss(figures(None, None, shares=[0.22, 0.78]))
    assert chosen["train.loss"].value == "ce+dice"
    assert chosen["train.class_weights"].value is None
    assert "'c0' 22.0% of the pixels" in chosen["train.loss"].why


def test_a_very_rare_class_weights_the_cross_entropy():
    shares = [0.6, 0.3, 0.095, 0.005]
    chosen = rules.loss(figures(*[None] * 4, shares=shares))
    assert chosen["train.loss"].value == "ce+dice"
    weights = chosen["train.class_weights"].value
    assert len(weights) == 4 and weights[3] == 4.0 and weights[0] < 1 < weights[2]
    assert all(0.25 <= w <= 4.0 for w in weights)


def test_the_background_of_two_or_three_classes_is_left_out_of_the_foreground():
    assert rules.foreground(figures(None, None, shares=[0.22, 0.78])).value == [0]
    assert rules.foreground(figures(None, None, None, shares=[0.3, 0.6, 0.1])).value == [0, 2]
    assert rules.foreground(figures(*[None] * 4)).value is None
    small = [ClassFigures("a", 0.8, 0.5, None), ClassFigures("b", 0.2, 1.0, None)]
    assert rules.foreground(small).value is None  # the largest is in half the images only


def test_vertical_flips_and_rotations_only_without_a_canonical_orientation():
    assert rules.augmentation(Target()).value["vflip"] == 0
    augment = rules.augmentation(Target(any_orientation=True)).value
    assert augment["vflip"] == 0.5 and augment["rotate"] == 90 and augment["hflip"] == 0.5


def test_small_datasets_are_cross_validated_and_large_ones_carve_validation():
    small = rules.split(fingerprint(pairs=30), Target())
    assert small["split.folds"].value == 5 and small["predict.ensemble"].value == "folds"
    assert small["split.test_fraction"].value == 0.2
    large = rules.split(fingerprint(pairs=5000), Target())
    assert large["split.folds"].value is None
    assert large["split.val_fraction"].value == 0.05
    assert large["split.test_fraction"].value == 0.05  # 250 test images


def test_a_search_is_never_cross_validated():
    chosen = rules.split(fingerprint(pairs=30), Target(search=6))
    assert (
        chosen["split.folds"].value is None
        and "one model per candidate" in chosen["split.folds"].why
    )


def test_the_official_test_list_is_the_test_split():
    fp = fingerprint(pairs=300, lists={"trainval": 200, "test": 100})
    chosen = rules.split(fp, Target())
    assert "unused: the official test list" in chosen["split.test_fraction"].why
    assert rules.split_sizes(fp, chosen) == (160, 40)  # validation: 20% of 200


def test_an_official_test_list_that_leaves_too_few_pairs_is_refused():
    fp = fingerprint(pairs=10, lists={"trainval": 2, "test": 8})
    with pytest.raises(PlanError, match="official test list holds 8 of 10 usable pairs: 2 left"):
        rules.split(fp, Target())


def test_tiny_datasets_fold_no_more_than_their_distinct_images_allow():
    chosen = rules.split(fingerprint(pairs=5), Target())
    assert chosen["split.folds"].value == 2
    copies = rules.split(fingerprint(pairs=5, duplicates=[["a", "b"]]), Target())
    assert copies["split.folds"].value is None


def test_a_sample_plans_for_the_whole_dataset():
    fp = fingerprint(pairs=500, found=7000)
    chosen = rules.split(fp, Target())
    assert rules.usable_total(fp) == 7000
    assert (
        chosen["split.test_fraction"].value == 0.05
        and "350 of 7000" in chosen["split.test_fraction"].why
    )


# ----------------------------------------------------------------------------- jobs, names


def test_resources_come_from_the_measured_peak_and_the_estimated_time():
    chosen = rules.resources(
        fingerprint(width=1000, height=1000),
        rules.Measured(peak_mb=3000, baseline_mb=800, step_s=0.5),
        target=Target(threads=4),
        arrays_mb=600,
        train_minutes=100,
        predict_minutes=4,
    )
    train = chosen["resources.train"].value
    assert train == {
        "threads": 4,
        "mem_mb": 4500,
        "runtime": 160,
    }  # 3000 * 1.3 + 600; 100 * 1.5 + 10
    assert chosen["resources.predict"].value["mem_mb"] == 4500
    assert chosen["train.gpus"].value == 1
    assert chosen["resources.predict"].value["runtime"] == 16
    assert "peak 3000 MB x 1.3 + arrays 600 MB" in chosen["resources.train"].why


def test_a_search_searches_around_the_plan():
    section = rules.search(
        Target(search=9), lr=1e-3, loss_name="ce", encoder="resnet18", epochs=90
    ).value
    assert section["sample"] == 9 and section["eta"] == 3
    assert section["min_epochs"] == 10 and section["max_epochs"] == 90
    assert section["space"]["train.lr"] == {"log_uniform": [0.000333, 0.003]}
    assert section["space"]["train.loss"]["choice"] == ["ce", "ce+dice"]
    assert rules.search(Target(), lr=1e-3, loss_name="ce", encoder="x", epochs=9).value is None
    with pytest.raises(PlanError, match="--search 1: a search needs at least 2"):
        rules.search(Target(search=1), lr=1e-3, loss_name="ce", encoder="x", epochs=9)


@pytest.mark.parametrize(
    "root, name, run",
    [
        ("data/cells", "cells", "cells"),
        (
            "../shared/data/isbi2012_membrane/train",
            "isbi2012_membrane-train",
            "isbi2012_membrane-train",
        ),
        ("/data/My Scans (2024)", "My Scans (2024)", "My-Scans-2024"),
        (".", "dataset", "dataset"),
    ],
)
def test_the_run_is_named_after_the_dataset(root, name, run):
    chosen = rules.names(fingerprint(root=root), None, "resnet18")
    assert chosen["dataset.name"].value == name and chosen["run_name"].value == run
    assert chosen["report.title"].value.startswith(name)
    assert "Oxford" not in chosen["report.title"].value


def test_a_given_name_names_the_run():
    assert rules.names(fingerprint(), "ISBI 2012", "resnet18")["run_name"].value == "ISBI-2012"
