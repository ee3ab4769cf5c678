"""Write the benchmark figures into the docs from the committed JSONs in tools/bench/results/.

Each figure sits in a marked block, ``<!-- figures:NAME -->`` ... ``<!-- /figures:NAME -->``,
whose text this script makes from ``tools/bench/results/<JSON>`` (FIGURES: name -> JSON, maker);
every block names the machine and date of its JSON. Rerun after committing a new JSON:

    python tools/performance_figures.py          # rewrite the blocks in the docs
    python tools/performance_figures.py --check  # exit 1, naming each stale block

tests/test_docs.py checks that the docs equal what this script writes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "tools" / "bench" / "results"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "config" / "README.md"]
BLOCK = re.compile(r"(<!-- figures:([\w-]+) -->\n)(.*?)(<!-- /figures:\2 -->)", re.S)


def _wrap(text: str, indent: str = "") -> str:
    """A paragraph wrapped as the docs are (99 columns), ending in a newline."""
    lines = textwrap.wrap(
        text, 99, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )
    return "\n".join(lines) + "\n"


def _measured(record: dict) -> str:
    return f"measured on {record['machine']}, {record['date']}"


def demo(record: dict) -> str:
    runs = {row["run"]: row for row in record["leaderboard"]}
    best = next(row for row in record["leaderboard"] if row["selected"] == "True")
    other = next(row for row in record["leaderboard"] if row is not best)
    minutes, seconds = divmod(round(record["wall_s"]), 60)
    assert set(runs) == set(record["runs"]), "leaderboard and metrics name different runs"
    return _wrap(
        f"`tools/bench/bench_demo.py` ({_measured(record)}, torch "
        f"{record['versions']['torch']}, segmentation-models-pytorch "
        f"{record['versions']['segmentation-models-pytorch']}): the pipeline of `make demo` "
        f"(`snakemake --configfile config/demo.yaml --cores {record['cores']}` on a fresh copy of "
        f"the workflow) took "
        f"{minutes} min {seconds} s, the venv already built. The {best['run']} run is selected "
        f"(validation mIoU {float(best['val_miou']):.3f}; test mIoU "
        f"{float(best['test_miou']):.3f}, mean Dice {float(best['test_mean_dice']):.3f}, pixel "
        f"accuracy {float(best['test_pixel_accuracy']):.3f}); the {other['run']} run reaches "
        f"validation mIoU {float(other['val_miou']):.3f}, test mIoU "
        f"{float(other['test_miou']):.3f}, with {int(other['parameters']) / 1e6:.1f} M "
        f"parameters against {int(best['parameters']) / 1e6:.1f} M."
    )


def runs(record: dict) -> str:
    single, grid = record["single_run"], record["grid_16_runs"]
    goals = record["goals"]
    return _wrap(
        f"`tools/bench/bench_runs.py` ({_measured(record)}): a no-op `snakemake -n` (everything "
        f"up to date) of the tiny config costs {single['cpu_s']:.2f} s of CPU as one run and "
        f"{grid['cpu_s']:.2f} s as a complete 16-run grid (`train.lr` × `train.loss`), "
        f"{record['grid_over_single_cpu']:.2f}× the single run (goals: at most "
        f"{goals['single_run_cpu_s']:g} s, at most {goals['grid_over_single_cpu']:g}×); the wall "
        f"time of those dry runs was {single['wall_s']:.1f} s and {grid['wall_s']:.1f} s."
    )


def compare(record: dict) -> str:
    return _wrap(
        f"`tools/bench/bench_compare.py` ({_measured(record)}): building the comparison report of "
        f"{record['runs']} runs ({record['test_images']} test images of "
        f"{record['image_size']}², {record['classes']} classes, {record['epochs']}-epoch "
        f"histories, galleries and 10,000 bootstrap resamples per pair) took "
        f"{record['wall_s']:.1f} s (goal: under {record['goal_s']:g} s)."
    )


def dag(record: dict) -> str:
    small, large = record["runs"][0], record["runs"][-1]
    return _wrap(
        f"`tools/bench/bench_dag.py` ({_measured(record)}): a `folder` dataset is watched file by "
        "file (see [what reruns](../config/README.md#what-reruns-when-something-changes)); on a "
        f"{large['pairs']:,}-pair folder the dry run costs "
        f"{large['cpu_s'] - small['cpu_s']:.2f} s more CPU than on {small['pairs']} pairs."
    )


def verify_memory(record: dict) -> str:
    before, after = record["runs"][0], record["runs"][-1]
    return _wrap(
        f"`tools/bench/bench_verify_memory.py` ({_measured(record)}): `segpipe verify` of one "
        f"{after['size'].replace('x', '×')} RGB PNG with its mask peaked at "
        f"{after['peak_rss_mb']:,} MB resident memory ({after['seconds']} s), down from "
        f"{before['peak_rss_mb']:,} MB ({before['seconds']} s) before the header check, the "
        "single decode and the `bincount` of uint8 masks."
    )


def predict(record: dict) -> str:
    speed, settings = record["images_per_s"], record["settings"]
    return _wrap(
        f"- Speed (`tools/bench/bench_predict.py`, {_measured(record)}, 1-minute load average "
        f"{record['load_average_1min_before']} before the run): {settings['model']} at "
        f"{settings['image_size']}², {settings['images']} images in batches of "
        f"{settings['batch_size']}: torch {speed['torch']['tta_off']:.1f} images/s "
        f"({speed['torch']['hflip']:.1f} with `hflip`), onnxruntime "
        f"{speed['onnxruntime']['tta_off']:.1f} images/s ({speed['onnxruntime']['hflip']:.1f} "
        "with `hflip`).",
        indent="  ",
    )


def lean_jobs(record: dict) -> str:
    before, after, goals = record["before"], record["after"], record["goals"]
    predict, images = record["predict_imports"], record["images"]
    assessment = after["val"]["cpu_s"] + after["test"]["cpu_s"]
    return _wrap(
        f"`tools/bench/bench_lean_jobs.py` ({_measured(record)}, 1-minute load average "
        f"{record['load_average_1min_before']} before the run): the evaluate step of a demo-scale "
        f"test split ({images['test']} masks of {record['image_sizes']}, {record['classes']} "
        f"classes) took {after['test']['cpu_s']:.2f} s of CPU and {after['test']['max_rss_mb']:.0f}"
        f" MB resident memory, down from {before['test']['cpu_s']:.2f} s and "
        f"{before['test']['max_rss_mb']:.0f} MB when it imported torch, smp and torchmetrics "
        f"(goals: at most {goals['evaluate_cpu_s']:g} s and {goals['evaluate_max_rss_mb']} MB); "
        f"val and test together, a model's whole assessment, took {assessment:.2f} s, against "
        f"{predict['cpu_s']:.2f} s and {predict['max_rss_mb']:.0f} MB for a predict job's imports "
        "alone."
    )


ASSESS_RULES = ("predict", "predict_no_tta", "evaluate", "evaluate_no_tta")


def _slurm_case(case: dict) -> str:
    before, after = case["before"], case["after"]

    def assess_cpu(result: dict) -> float:
        return sum(result["rules"].get(rule, {}).get("cpu_s", 0) for rule in ASSESS_RULES)

    def jobs(result: dict) -> str:
        return f"{result['sbatch_jobs']} sbatch jobs ({result['gpu_jobs']} asking for a GPU)"

    return (
        f"{jobs(before)} and {before['wall_s']:.0f} s of wall time before (commit "
        f"{before['commit']}), {jobs(after)} and {after['wall_s']:.0f} s after (commit "
        f"{after['commit']}); prediction and evaluation took {assess_cpu(before):.0f} s of CPU "
        f"before and {assess_cpu(after):.0f} s after"
    )


def slurm(record: dict) -> str:
    cases = record["cases"]
    return _wrap(
        f"`tools/bench/bench_slurm.py` ({_measured(record)}; the single-node Slurm of "
        "`tools/slurm/local-slurm.sh` with 2 fake GPUs, training on the CPU; the profile as "
        f"committed, so status checks every 40 s or more): `{record['command']}`. The demo "
        f"config (2 runs): {_slurm_case(cases['demo'])}. A 4-run grid of the demo config with "
        f"`predict.tta: [hflip]` and 4 epochs: {_slurm_case(cases['grid4-tta'])}."
    )


SEARCH_NAMES = {
    "plain_short": "successive halving",
    "plain_long": "successive halving",
    "brackets": "{} brackets",
}


def _installed(run: dict) -> str:
    if run.get("installed_chromium"):
        return "the Slurm packages already installed, Chromium installed by `.ci/run` in that time"
    return "Chromium and the Slurm packages already installed"


def _interval(low: float | None, high: float | None) -> str:
    return "none" if low is None else f"[{low:+.3f}, {high:+.3f}]"


def _split(split: dict) -> str:
    return f"{split['train']} training, {split['val']} validation and {split['test']} test images"


def _training(phase: dict) -> str:
    cost = phase["training"]
    return (
        f"{cost['jobs']} training jobs, {cost['wall_s'] / 60:.0f} min of wall time and "
        f"{cost['cpu_s'] / 60:.0f} min of CPU in all"
    )


def _and(values: list) -> str:
    """1 -> "1", [1, 2] -> "1 and 2", [1, 2, 4] -> "1, 2 and 4"."""
    words = [str(v) for v in values]
    return " and ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else words[0]


def _search_row(name: str, result: dict, firsts: list[int]) -> str:
    """A search's row; ``firsts``: the brackets' first budgets."""
    first = _and(firsts) if name == "brackets" else str(result["first_budget"])
    label = SEARCH_NAMES[name].format(len(firsts))
    loss = result["regret"]
    return (
        f"| {label} | {first} | {result['epochs']} ({result['epochs_ratio']:.0%}) | "
        f"{result['winner']} | {'yes' if result['same_winner'] else 'no'} | "
        f"{loss['test_miou_difference']:+.3f} {_interval(*loss['ci95'])} | "
        f"{loss['per_image_mean']:+.3f} {_interval(*loss['per_image_ci95'])} | "
        f"{'yes' if result['held_up'] else 'no'} |\n"
    )


def _rules_line(rules: dict) -> str:
    return "; ".join(
        f"{rule} {r['held_up']} of {r['searches']} (mean regret {r['mean_regret']:+.4f}"
        + (f", mean rho {r['mean_rho']:+.2f}" if "mean_rho" in r else "")
        + ")"
        for rule, r in rules.items()
    )


def _search_line(case: dict) -> str:
    ladder = " → ".join(str(b) for b in case["ladder"])
    brackets = f"{case['brackets']} bracket{'s' if case['brackets'] > 1 else ''}"
    return f"{brackets} over {ladder} at eta {case['eta']}, {case['epochs_ratio']:.0%}"


def _replayed(analysis: dict) -> str:
    """The searches replayed from the grid's histories: how many held up (the grid's winner or
    one not worse beyond its interval) by each promotion rule, and the cheapest that held up."""
    configurations = analysis["configurations_replayed"]
    rules = analysis["promotion_rules"]["searches_replayed"]
    held = [c for c in configurations if c["held_up"]]
    plain = [c for c in configurations if c["brackets"] == 1]
    text = (
        f"Replayed from the grid's histories, {len(configurations)} searches (eta "
        f"{' and '.join(map(str, rules['etas']))}, first budgets "
        f"{', '.join(map(str, rules['first_budgets']))}, 1 bracket to the rungs minus 1): "
        f"{len(held)} held up, {sum(c['held_up'] for c in plain)} of the {len(plain)} "
        "plain ones"
    )
    if held:
        best = min(held, key=lambda c: (c["epochs_ratio"], c["brackets"]))
        text += f"; the cheapest that held up: {_search_line(best)} of the grid's epochs"
    return (
        f"{text}. The same searches with promotion by the best epoch, the last epoch or a "
        f"smoothed score (mean rho over the epochs before the last): {_rules_line(rules['rules'])}."
    )


def search(record: dict) -> str:
    """One dataset of tools/bench/bench_search.py: the grid, the three searches as a table, the
    rank correlations, the replay check and the replayed searches."""
    grid, analysis, scale = record["grid"], record["analysis"], record["scale"]
    budget, searches = record["search_budget"], analysis["searches"]
    firsts = analysis["ladder"][: budget["brackets"]]
    best = grid["runs"][grid["winner"]]
    rho = ", ".join(
        f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''} "
        + (f"{r['rho']:+.2f}" if r["rho"] is not None else "n/a")
        for r in analysis["rank_correlation"]["best"]["val"]
    )
    rho_test = ", ".join(
        f"{r['rho']:+.2f}" if r["rho"] is not None else "n/a"
        for r in analysis["rank_correlation"]["best"]["test"]
    )
    check = analysis["consistency"]
    text = _wrap(
        f"`tools/bench/bench_search.py` ({_measured(record)}; `{record['command']}`, one thread "
        f"per job; {scale['model']} at {scale['image_size']} px; {_split(grid['split'])}): the "
        f"grid of {grid['candidates']} candidates trained {grid['epochs']} epochs "
        f"({budget['max_epochs']} each; {_training(grid)}) and chose {grid['winner']} "
        f"(validation mIoU {best['val_miou']:.3f}, test {best['test_miou']:.3f}); the search "
        f"with `brackets: {budget['brackets']}` over rungs of "
        f"{' → '.join(str(b) for b in analysis['ladder'])} epochs at eta {budget['eta']} "
        f"trained {searches['brackets']['epochs']} epochs ({_training(record['search'])}). Its "
        "bracket b is the plain search from the ladder's b-th budget, scored alone below; "
        "regret: the grid winner's test mIoU minus the search winner's (the mIoU of the test "
        "split's summed confusion matrix, as rule evaluate scores it), with its paired "
        "bootstrap 95% interval over the test images (the statistic the verdict reads); per "
        "image: the mean of the difference of the per-image mIoU, which weighs every image "
        "alike, with its interval (the comparison report's statistic); held up: the grid's "
        "winner, or one not worse on test beyond the interval (its low end at or below 0):"
    )
    table = (
        "\n| search | first budget (epochs) | epochs (of the grid's) | winner | the grid's | "
        "regret (95% interval) | per image (95% interval) | held up |\n"
        "|---|---|---|---|---|---|---|---|\n"
        + "".join(_search_row(name, searches[name], firsts) for name in SEARCH_NAMES)
        + "\n"
    )
    goal = searches["brackets"]["meets_goal"]
    tail = _wrap(
        f"Goal (brackets: held up at no more than 50% of the grid's epochs): "
        f"{'met' if goal else 'not met'}. Spearman's rho between the candidates' scores at each "
        f"rung and the grid's final validation mIoU: {rho} (against test mIoU: {rho_test}). "
        f"The search's {check['rungs']} rung scores are the grid's histories at each budget "
        f"(largest difference {check['max_score_difference']:.1e}; the same decisions: "
        f"{'yes' if check['same_decisions'] else 'no'}). {_replayed(analysis)}"
    )
    return text + table + tail


def search_summary(record: dict) -> str:
    """Across the datasets of tools/bench/bench_search.py: which searches held up, the promotion
    rules, the replayed searches that held up everywhere."""
    short, long = (record["first_budgets"][n] for n in ("plain_short", "plain_long"))
    names = {
        "plain_short": f"successive halving from {short} epoch{'s' if short > 1 else ''}",
        "plain_long": f"from {long} epochs",
        "brackets": f"the {record['brackets']} brackets",
    }
    datasets = "; ".join(
        f"{name}: {_held(names, {k: v for k, v in result.items() if k != 'goal'})}"
        for name, result in record["datasets"].items()
    )
    held = record["held_everywhere"]
    cheapest = (
        f"the cheapest replayed search that held up on all three: {_search_line(held[0])} of "
        "the grid's epochs"
        if held
        else "no replayed search held up on all three"
    )
    rules = _rules_line(record["rules"])
    return _wrap(
        f"Across the three datasets ({_measured(record)}): {datasets}; {cheapest}."
        + _seeds(record.get("seeds", {}), names)
        + _every_seed(record)
        + f" Promotion rules over every replayed search of the {record.get('records', 3)} "
        f"grids, held up: {rules}."
    )


def _held(names: dict, held: dict) -> str:
    """Search name -> held up, as words: "successive halving from 2 epochs held up, ..."."""
    return ", ".join(
        f"{names[search]} {'held up' if ok else 'did not'}" for search, ok in held.items()
    )


def _every_seed(record: dict) -> str:
    """The cheapest replayed search, and the cheapest in brackets, that held up on every grid
    of every seed."""
    every_seed = record.get("held_every_seed") or []
    if not every_seed:
        return (
            " No replayed search held up on all three datasets with every seed."
            if record.get("seeds")
            else ""
        )
    brackets = [c for c in every_seed if c["brackets"] > 1]
    return (
        f" Over the {record['records']} grids (three datasets, every seed) the cheapest "
        f"replayed search that held up on all: {_search_line(every_seed[0])} of the grid's "
        f"epochs at most; with brackets: {_search_line(brackets[0]) if brackets else 'none'}."
    )


def _seeds(seeds: dict, names: dict) -> str:
    """The same searches on grids trained again with other seeds (replayed from their
    histories): per seed and dataset which held up, and the brackets against the goal."""
    if not seeds:
        return ""
    parts = []
    for seed, datasets in seeds.items():
        rows = "; ".join(
            f"{name}: {_held(names, {k: r['held_up'] for k, r in result['searches'].items()})}"
            f" ({result['searches']['brackets']['epochs_ratio']:.0%} of the grid's epochs)"
            for name, result in datasets.items()
        )
        met = sum(result["goal"] for result in datasets.values())
        parts.append(
            f"with `train.seed: {seed}`, {rows}; the brackets met the goal on {met} of "
            f"{len(datasets)} datasets"
        )
    return (
        " Every grid trained again with other seeds, the same searches replayed from its "
        "histories (seed 0's search wrote the grid's histories to the last digit, so a replay "
        f"is the search): {'. And '.join(parts)}."
    )


LOAD_WHEN = {
    "before_predict": "before the predict cases",
    "after_predict": "after them",
    "between_grids": "between the grids",
    "after_grid": "after the grids",
}
ASSESS_CASES = {"demo": "the demo's", "grid": "the grid's", "oxford": "the Oxford config's"}


def _assess_row(name: str, case: dict) -> str:
    before, after, drawn = case["before"], case["after"], case["after_all_overlays"]
    return (
        f"| {ASSESS_CASES[name]}: {case['model']} at {case['image_size']}², {case['images']} "
        f"images of {case['image_sizes']} | {before['images_per_cpu_s']:.1f} | "
        f"{after['images_per_cpu_s']:.1f} | **{case['speedup']:.2f}×** | "
        f"{drawn['images_per_cpu_s']:.1f} |"
    )


def _assess_grid(record: dict) -> str:
    grid, goal = record["grid"], record["goals"]["assess_over_train_cpu"]
    before, after = grid["before"], grid["after"]
    images = after["images"]

    def share(result: dict) -> str:
        return (
            f"{result['assess_cpu_s']:.0f} s of CPU against {result['train_cpu_s']:.0f} s of "
            f"training, {result['assess_over_train_cpu']:.0%}"
        )

    return _wrap(
        f"The grid ({grid['runs']} runs of {grid['epochs']} epochs at 64², {images['train']} "
        f"training images, {images['val']} val and {images['test']} test images of 375-500 px, "
        f"one thread per job, `snakemake --cores 2`): assessing the models (rules predict, "
        f"evaluate, report and compare) took {share(before)}, before; {share(after)}, after "
        f"(goal: at most {goal:.0%}): {'met' if after['assess_over_train_cpu'] <= goal else 'not met'}. "
        f"Training took {before['train_cpu_s']:.0f} s of CPU in the first grid and "
        f"{after['train_cpu_s']:.0f} s in the second, though its code differs only in "
        "validation's class reduction: CPU seconds too grow with other work on the machine; "
        f"against the first grid's training, the assessment after is "
        f"{after['assess_cpu_s'] / before['train_cpu_s']:.0%}."
    )


def assess(record: dict) -> str:
    loads = ", ".join(
        f"{value:g} {LOAD_WHEN[key]}" for key, value in record["load_average_1min"].items()
    )
    head = _wrap(
        f"`tools/bench/bench_assess.py` ({_measured(record)}; 1-minute load average {loads}; "
        f"`{record['command']}`): rule predict's images per CPU second on "
        f"{record['threads']} thread, before (commit {record['before_commit']}) and after "
        f"(commit {record['after_commit']}), each the best of its passes, checkpoint loading "
        "included; the last column writes every image's overlay as before (`predict.overlays: "
        f"all`). Goal: {record['goals']['predict_speedup']:g}× faster."
    )
    table = [
        "| case | before | after | speed-up | after, `overlays: all` |",
        "|---|---|---|---|---|",
        *(_assess_row(name, case) for name, case in record["predict"].items()),
    ]
    imports = max(case["after"]["imports_cpu_s"] for case in record["predict"].values())
    tail = _wrap(
        f"A predict job also spends up to {imports:.1f} s of CPU importing torch, "
        "segmentation-models-pytorch and their dependencies before it predicts anything."
    )
    parts = [head, "\n", "\n".join(table), "\n\n", tail]
    if "profile_s" in record["predict"].get("grid", {}).get("before", {}):
        parts += ["\n", _assess_steps(record["predict"]["grid"])]
    if "grid" in record:
        parts += ["\n", _assess_grid(record)]
    return "".join(parts)


STEP_NAMES = {"load model": "load the model (once per job, spread over the images)"}


def _assess_steps(case: dict) -> str:
    """The grid case's predict pass by step under cProfile, ms of CPU per image."""
    before, after = case["before"]["profile_s"], case["after"]["profile_s"]

    def ms(seconds: float) -> str:
        return f"{1000 * seconds / case['images']:.1f}"

    rows = [
        f"| {STEP_NAMES.get(step, step)} | {ms(before[step])} | {ms(after[step])} |"
        for step in before
        if step != "all"
    ]
    other = {
        k: v["all"] - sum(x for s, x in v.items() if s != "all")
        for k, v in (("b", before), ("a", after))
    }
    return (
        _wrap(
            f"The grid's case by step (one pass under cProfile, CPU ms per image, "
            f"{case['images']} images):"
        )
        + "\n| step | before | after |\n|---|---|---|\n"
        + "\n".join(rows)
        + f"\n| other (the loop, tensors, files) | {ms(other['b'])} | {ms(other['a'])} |"
        + f"\n| **all** | **{ms(before['all'])}** | **{ms(after['all'])}** |\n"
    )


PLAN_CASES = {
    "isbi": "ISBI 2012 membranes",
    "camvid": "CamVid road scenes",
    "oxford-synthetic": "synthetic Oxford-layout pets",
}


def _geometry(train: dict) -> str:
    # A hand-written config that sets no resize squashes (the schema's default).
    if train.get("resize", "squash") == "squash":
        return f"squashed to {train['image_size']}²"
    return f"kept at scale {train['image_scale']:g}, {train['image_size']}² crops"


def _plan_case(name: str, case: dict) -> str:
    planned, hand, diff = case["planned"], case["hand_written"], case["test_miou_difference"]
    low, high = diff["ci95"]
    interval = "none" if low is None else f"[{low:+.3f}, {high:+.3f}]"
    folds = planned["split"]["folds"]
    how = f"{folds} folds and their ensemble on test" if folds else "one model"
    peak = max(planned["train_peak_rss_mb"] or [0])
    p, h = planned["config"], hand["config"]
    return _wrap(
        f"- {PLAN_CASES[name]} (`{case['example']}`, {case['epochs']} epochs each): planned "
        f"{_geometry(p)}, {p['encoder']} depth {p['encoder_depth']}, batch {p['batch_size']}, "
        f"loss {p['loss']}, {how}: validation mIoU {planned['val_miou']:.3f}, test "
        f"{planned['test_miou']:.3f}; hand-written {_geometry(h)}, {h['encoder']}, batch "
        f"{h['batch_size']}, loss {h['loss']}: {hand['val_miou']:.3f}, {hand['test_miou']:.3f}. "
        f"Mean per-image test mIoU difference (planned minus hand-written) "
        f"{diff['planned_minus_hand_written']:+.3f}, "
        f"paired bootstrap 95% interval {interval} over {diff['n_images']} test images; the "
        f"planned train jobs peaked at {peak:,.0f} MB of the {planned['train_mem_mb']:,} MB they "
        f"asked for; planning took {case['plan_s']:.0f} s, training and scoring "
        f"{planned['wall_s'] / 60:.1f} min (hand-written {hand['wall_s'] / 60:.1f} min).",
        indent="  ",
    )


def plan(record: dict) -> str:
    goals, timing = record["goals"], record["planning_time"]
    sample, every = timing["sample_500"], timing["all"]
    head = _wrap(
        f"`tools/bench/bench_plan.py` ({_measured(record)}, 1-minute load average "
        f"{record['load_average_1min_before']} before the run; `{record['command']}`): each "
        "dataset planned with `segpipe plan --device cpu --max-size <the hand-written config's "
        "input size at this scale>`, then both configs trained for the same epochs with "
        "`snakemake --cores 2` and scored on the same test images."
    )
    cases = "".join(_plan_case(name, case) for name, case in record["cases"].items())
    tail = _wrap(
        f"The planned config scored at least as well, or within the interval, on "
        f"{goals['planned_at_least_as_good_or_inside_the_interval']} datasets (goal: 2 of 3: "
        f"{'met' if goals['met'] else 'not met'}); planned train jobs within their memory: "
        f"{'yes' if goals['planned_train_jobs_within_their_memory'] else 'no'}. Planning "
        f"{timing['pairs']:,} synthetic pairs took {sample['wall_s']:.0f} s with `--sample 500` "
        f"({sample['fingerprint_s']:.0f} s of it reading them, the rest the probe; goal: under "
        f"a minute, {'met' if sample['wall_s'] < 60 else 'not met'}) and {every['wall_s']:.0f} s "
        f"reading all of them ({every['fingerprint_s']:.0f} s)"
        + (
            f", measured again on commit {timing['commit'][:7]} at a 1-minute load average of "
            f"{timing['load_average_1min_before']} (`--timing-only`)."
            if "commit" in timing
            else "."
        )
    )
    return head + "\n" + cases + "\n" + tail


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def ci(record: dict) -> str:
    run, check, disk, goals = record["ci"], record["check"], record["disk"], record["goals"]
    peak, left = disk["peak_above_start_bytes"] / 1024**3, disk["left_behind_bytes"] / 1024**2
    return _wrap(
        f"`tools/bench/bench_ci.py` ({_measured(record)}, commit {record['commit'][:7]}, a fresh "
        f"clone; {_installed(run)}): `.ci/run` took "
        f"{_minutes(run['wall_s'])} in all, building `.venv` included, of which "
        f"{_minutes(run['pytest_s'])} for {run['passed']:,} tests on three workers "
        f"({run.get('skipped', 0)} skipped, {run.get('failed', 0)} failed; goal: at most "
        f"{goals['ci_s'] // 60} min, {_met(run['rc'] == 0 and run['wall_s'] <= goals['ci_s'])}). "
        f"`make check` then took {_minutes(check['wall_s'])}, the local Slurm up "
        f"({check['passed']:,} tests; goal: at "
        f"most {goals['check_s'] // 60} min, "
        f"{_met(check['rc'] == 0 and check['wall_s'] <= goals['check_s'])}). During `.ci/run` the "
        f"temporary folder grew by at most {peak:.1f} GB (goal: at most {goals['peak_gb']} GB, "
        f"{_met(peak <= goals['peak_gb'])}) and the run left {left:.1f} MB there (goal: at most "
        f"{goals['left_behind_gb']} GB, {_met(left <= goals['left_behind_gb'] * 1024)})."
    )


FIGURES: dict[str, tuple[str, Callable[[dict], str]]] = {
    "ci": ("ci-cpu-2cores.json", ci),
    "demo": ("demo-cpu-2cores.json", demo),
    "runs": ("runs-cpu-2cores.json", runs),
    "compare": ("compare-cpu-2cores.json", compare),
    "dag": ("dag-cpu-2cores.json", dag),
    "verify-memory": ("verify-memory-cpu-2cores.json", verify_memory),
    "predict": ("predict-cpu-2cores.json", predict),
    "lean-jobs": ("lean-jobs-cpu-2cores.json", lean_jobs),
    "slurm": ("slurm-cpu-2cores.json", slurm),
    "search-membrane": ("search-membrane-cpu-2cores.json", search),
    "search-camvid": ("search-camvid-cpu-2cores.json", search),
    "search-synthetic": ("search-synthetic-cpu-2cores.json", search),
    "search-summary": ("search-summary-cpu-2cores.json", search_summary),
    "assess": ("assess-cpu-2cores.json", assess),
    "plan": ("plan-cpu-2cores.json", plan),
}


def figure(name: str) -> str:
    """The text of block ``name``, made from its JSON."""
    if name not in FIGURES:
        raise SystemExit(f"unknown figures block '{name}'; valid: {sorted(FIGURES)}")
    file, make = FIGURES[name]
    return make(json.loads((RESULTS / file).read_text(encoding="utf-8")))


def rewrite(text: str) -> str:
    """``text`` with every marked block's contents made afresh."""
    return BLOCK.sub(lambda m: m[1] + figure(m[2]) + m[4], text)


def blocks(text: str) -> list[str]:
    return [m[2] for m in BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say which blocks are stale")
    args = parser.parse_args(argv)
    stale = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        new = rewrite(text)
        if new != text:
            stale.append(str(path.relative_to(REPO)))
            if not args.check:
                tmp = path.with_suffix(".md.tmp")
                tmp.write_text(new, encoding="utf-8")
                tmp.replace(path)
    if args.check and stale:
        print(f"stale figures in {', '.join(stale)}: run tools/performance_figures.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
