"""Write the benchmark figures into the docs from the committed JSONs in benchmarks/results/.

Each figure sits in a marked block, ``<!-- figures:NAME -->`` ... ``<!-- /figures:NAME -->``,
whose text this script makes from ``benchmarks/results/<JSON>`` (FIGURES: name -> JSON, maker);
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
RESULTS = REPO / "benchmarks" / "results"
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
        f"`benchmarks/bench_demo.py` ({_measured(record)}, torch "
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
        f"`benchmarks/bench_runs.py` ({_measured(record)}): a no-op `snakemake -n` (everything "
        f"up to date) of the tiny config costs {single['cpu_s']:.2f} s of CPU as one run and "
        f"{grid['cpu_s']:.2f} s as a complete 16-run grid (`train.lr` × `train.loss`), "
        f"{record['grid_over_single_cpu']:.2f}× the single run (goals: at most "
        f"{goals['single_run_cpu_s']:g} s, at most {goals['grid_over_single_cpu']:g}×); the wall "
        f"time of those dry runs was {single['wall_s']:.1f} s and {grid['wall_s']:.1f} s."
    )


def compare(record: dict) -> str:
    return _wrap(
        f"`benchmarks/bench_compare.py` ({_measured(record)}): building the comparison report of "
        f"{record['runs']} runs ({record['test_images']} test images of "
        f"{record['image_size']}², {record['classes']} classes, {record['epochs']}-epoch "
        f"histories, galleries and 10,000 bootstrap resamples per pair) took "
        f"{record['wall_s']:.1f} s (goal: under {record['goal_s']:g} s)."
    )


def dag(record: dict) -> str:
    small, large = record["runs"][0], record["runs"][-1]
    return _wrap(
        f"`benchmarks/bench_dag.py` ({_measured(record)}): a `folder` dataset is watched file by "
        "file (see [what reruns](../config/README.md#what-reruns-when-something-changes)); on a "
        f"{large['pairs']:,}-pair folder the dry run costs "
        f"{large['cpu_s'] - small['cpu_s']:.2f} s more CPU than on {small['pairs']} pairs."
    )


def verify_memory(record: dict) -> str:
    before, after = record["runs"][0], record["runs"][-1]
    return _wrap(
        f"`benchmarks/bench_verify_memory.py` ({_measured(record)}): `segpipe verify` of one "
        f"{after['size'].replace('x', '×')} RGB PNG with its mask peaked at "
        f"{after['peak_rss_mb']:,} MB resident memory ({after['seconds']} s), down from "
        f"{before['peak_rss_mb']:,} MB ({before['seconds']} s) before the header check, the "
        "single decode and the `bincount` of uint8 masks."
    )


def predict(record: dict) -> str:
    speed, settings = record["images_per_s"], record["settings"]
    return _wrap(
        f"- Speed (`benchmarks/bench_predict.py`, {_measured(record)}, 1-minute load average "
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
        f"`benchmarks/bench_lean_jobs.py` ({_measured(record)}, 1-minute load average "
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
        f"`benchmarks/bench_slurm.py` ({_measured(record)}; the single-node Slurm of "
        "`tools/slurm/local-slurm.sh` with 2 fake GPUs, training on the CPU; the profile as "
        f"committed, so status checks every 40 s or more): `{record['command']}`. The demo "
        f"config (2 runs): {_slurm_case(cases['demo'])}. A 4-run grid of the demo config with "
        f"`predict.tta: [hflip]` and 4 epochs: {_slurm_case(cases['grid4-tta'])}."
    )


def search(record: dict) -> str:
    found, grid, verdict = record["search"], record["grid"], record["verdict"]
    budget, diff = record["search_budget"], verdict["test_miou_difference"]
    low, high = diff["ci95"]
    interval = "none" if low is None else f"[{low:+.3f}, {high:+.3f}]"
    winners = (
        "the same winner"
        if verdict["same_winner"]
        else f"different winners ({found['winner']} against {grid['winner']})"
    )
    return _wrap(
        f"`benchmarks/bench_search.py` ({_measured(record)}; `{record['command']}`, "
        f"`{record['config']}` at {record['overrides']['train']['image_size']} px, one thread "
        f"per job): the search over {grid['candidates']} candidates (rungs of "
        f"{'/'.join(str(n) for n in found['rungs'])} candidates, {budget['min_epochs']} to "
        f"{budget['max_epochs']} epochs at eta {budget['eta']}) trained {found['epochs']} epochs "
        f"and chose {found['winner']} (validation mIoU "
        f"{found['val_miou']:.3f}, test {found['test_miou']:.3f}) in {found['wall_s'] / 60:.1f} "
        f"min to the winner's test scores; the full grid trained {grid['epochs']} epochs and "
        f"chose {grid['winner']} (validation {grid['val_miou']:.3f}, test "
        f"{grid['test_miou']:.3f}) in {grid['wall_s'] / 60:.1f} min to its leaderboard (every "
        f"run predicted, evaluated and reported). That is "
        f"{winners}, a per-image test mIoU difference (grid minus search) of "
        f"{diff['grid_minus_search']:+.3f} with paired bootstrap 95% interval {interval} over "
        f"{diff['n_images']} test images, at {verdict['epochs_ratio']:.0%} of the grid's epochs "
        f"(goal: the same winner or 0 inside the interval, at no more than 40%): "
        f"{'met' if verdict['passes'] else 'not met'}."
    )


PLAN_CASES = {
    "isbi": "ISBI 2012 membranes",
    "camvid": "CamVid road scenes",
    "oxford-synthetic": "synthetic Oxford-layout pets",
}


def _geometry(train: dict) -> str:
    if train["resize"] == "squash":
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
        f"Test mIoU difference (planned minus hand-written) {diff['planned_minus_hand_written']:+.3f}, "
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
        f"`benchmarks/bench_plan.py` ({_measured(record)}, 1-minute load average "
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
        f"a minute) and {every['wall_s']:.0f} s reading all of them "
        f"({every['fingerprint_s']:.0f} s)."
    )
    return head + "\n" + cases + "\n" + tail


FIGURES: dict[str, tuple[str, Callable[[dict], str]]] = {
    "demo": ("demo-cpu-2cores.json", demo),
    "runs": ("runs-cpu-2cores.json", runs),
    "compare": ("compare-cpu-2cores.json", compare),
    "dag": ("dag-cpu-2cores.json", dag),
    "verify-memory": ("verify-memory-cpu-2cores.json", verify_memory),
    "predict": ("predict-cpu-2cores.json", predict),
    "lean-jobs": ("lean-jobs-cpu-2cores.json", lean_jobs),
    "slurm": ("slurm-cpu-2cores.json", slurm),
    "search": ("search-membrane-cpu-2cores.json", search),
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
