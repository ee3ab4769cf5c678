"""What tools/bench/bench_search.py reports of one dataset, from its grid and its bracket search.

A search's rung trains a candidate exactly as the grid trains it up to the rung's budget (the
same schedule of max_epochs; tests/training/test_search_train.py), so the grid's per-epoch validation
mIoU replays any successive-halving search over the same candidates and ladder: with the
package's own promotion (segpipe.evaluation.rungs.promote: ties to the first declared, NaN
last). :func:`analyze` checks that replay against the rung files the real search wrote, then
scores plain successive halving from each first budget and the brackets together, and replays
the same searches when promotion reads a rung's last epoch or a smoothed score instead of its
best epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from segpipe.evaluation.metrics import summarize
from segpipe.evaluation.rungs import promote
from segpipe.reporting.comparison import paired_difference
from segpipe.workflow.search import rung_budgets

RULES = ("best", "last", "smoothed")
SMOOTHING_SPAN = 3  # the smoothed score: exponential moving average, span 3 epochs
# The replayed plain searches of the promotion-rule comparison: first budgets and eta.
REPLAY_FIRST = (1, 2, 3, 4, 6)
REPLAY_ETA = (2, 3)


def score(history: Sequence[float], budget: int, rule: str) -> float:
    """A candidate's score at ``budget`` epochs from its per-epoch validation mIoU: the best
    epoch so far, the last epoch, or the exponential moving average (span 3) at the last."""
    seen = pd.Series(history[:budget], dtype=float)
    if rule == "best":
        return float(seen.max()) if seen.notna().any() else math.nan
    if rule == "last":
        return float(seen.iloc[-1])
    return float(seen.ewm(span=SMOOTHING_SPAN).mean().iloc[-1])


def replay_bracket(
    histories: Mapping[str, Sequence[float]], budgets: Sequence[int], first: int, eta: int,
    rule: str,
) -> list[dict]:  # fmt: skip
    """One bracket from rung ``first`` of ``budgets``: per rung its budget, every candidate's
    score and who goes on (the last rung: the bracket's best alone). ``rule`` scores the rungs
    that promote; the last rung selects by the best epoch, the checkpoint a winner publishes
    (best.pt) and the one the grid's leaderboard scores."""
    alive, rungs = list(histories), []
    for rung in range(first, len(budgets)):
        last = rung == len(budgets) - 1
        scores = [
            (name, score(histories[name], budgets[rung], "best" if last else rule))
            for name in alive
        ]
        promoted = promote(scores, 1 if last else math.ceil(len(alive) / eta))
        rungs.append(
            {"rung": rung, "epochs": budgets[rung], "scores": dict(scores), "promoted": promoted}
        )
        alive = promoted
    return rungs


def replay(
    histories: Mapping[str, Sequence[float]], budgets: Sequence[int], firsts: Sequence[int],
    eta: int, rule: str,
) -> dict:  # fmt: skip
    """A search of brackets starting at rungs ``firsts``: its rungs, epochs (each candidate
    once, to the most any bracket gave it) and winner (the best of the brackets' last rungs,
    ties to the first bracket)."""
    brackets = [replay_bracket(histories, budgets, first, eta, rule) for first in firsts]
    reached: dict[str, int] = {}
    for bracket in brackets:
        for rung in bracket:
            for name in rung["scores"]:
                reached[name] = max(reached.get(name, 0), rung["epochs"])
    bests = [(str(i), b[-1]["scores"][b[-1]["promoted"][0]]) for i, b in enumerate(brackets)]
    (chosen,) = promote(bests, 1)
    return {
        "brackets": brackets,
        "epochs": sum(reached.values()),
        "winner": brackets[int(chosen)][-1]["promoted"][0],
    }


def per_image(run: Mapping) -> pd.DataFrame:
    items = run["test_per_image"].items()
    return pd.DataFrame({"id": [k for k, _ in items], "mean_iou": [v for _, v in items]})


def pooled_difference(
    best: Mapping[str, Sequence[int]], other: Mapping[str, Sequence[int]], *, seed: int = 0,
    n_resamples: int = 10_000, confidence: float = 0.95,
) -> dict:  # fmt: skip
    """``best``'s dataset-level mIoU minus ``other``'s over the same images (image id ->
    flattened confusion matrix), with its paired percentile bootstrap interval: each resample
    draws images with both models' matrices together and pools them as rule evaluate pools a
    split's (segpipe.evaluation.metrics.summarize of the summed matrix)."""
    ids = sorted(best)
    assert ids == sorted(other), "the two models were scored on different images"
    size = math.isqrt(len(best[ids[0]]))
    a, b = (np.array([m[i] for i in ids]).reshape(len(ids), size, size) for m in (best, other))

    def difference(images: np.ndarray) -> float:
        index = images.astype(int)
        return summarize(a[index].sum(0))["mean_iou"] - summarize(b[index].sum(0))["mean_iou"]

    value = difference(np.arange(len(ids)))
    if np.array_equal(a, b):
        return {"difference": value, "ci95": [value, value], "n_images": len(ids)}
    result = scipy.stats.bootstrap(
        (np.arange(len(ids)),), difference, n_resamples=n_resamples, vectorized=False,
        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed),
    )  # fmt: skip
    low, high = result.confidence_interval
    return {"difference": value, "ci95": [float(low), float(high)], "n_images": len(ids)}


def regret(grid: Mapping, winner: str) -> dict:
    """Grid winner's test mIoU minus ``winner``'s (the dataset-level mIoU of rule evaluate) and
    the paired bootstrap interval of that difference over the test images (the verdict reads
    it); beside it the mean per-image difference and its interval (the comparison report's
    statistic, which weighs every image alike). Both 0 when the winners are the same."""
    runs, best = grid["runs"], grid["winner"]
    pooled = pooled_difference(runs[best]["test_confusion"], runs[winner]["test_confusion"])
    diff = paired_difference(per_image(runs[winner]), per_image(runs[best]))
    return {
        "test_miou_difference": runs[best]["test_miou"] - runs[winner]["test_miou"],
        "ci95": pooled["ci95"],
        "per_image_mean": diff.mean,
        "per_image_ci95": [diff.low, diff.high],
        "n_images": diff.n_images,
    }


def verdict(grid: Mapping, result: Mapping, goal_ratio: float) -> dict:
    """The winner against the grid's, the regret (``grid["regrets"]``, :func:`regret` of every
    candidate), the epochs against the grid's."""
    full = len(grid["runs"]) * len(next(iter(grid["runs"].values()))["history_val_miou"])
    loss = grid["regrets"][result["winner"]]
    low = loss["ci95"][0]
    same = result["winner"] == grid["winner"]
    # Held up: the grid's winner, or one not worse on test beyond the interval (a winner better
    # than the grid's, whose whole interval is below 0, holds up too).
    held = same or (low is not None and low <= 0)
    ratio = result["epochs"] / full
    return {
        "winner": result["winner"],
        "same_winner": same,
        "epochs": result["epochs"],
        "epochs_ratio": round(ratio, 4),
        "regret": loss,
        "held_up": held,
        "meets_goal": bool(held and ratio <= goal_ratio),
    }


def rank_correlations(
    histories: Mapping[str, Sequence[float]], budgets: Sequence[int], final: Mapping[str, float],
    rule: str,
) -> list[dict]:  # fmt: skip
    """Per rung, Spearman's rho (scipy.stats.spearmanr) between every candidate's score at
    the rung's budget and ``final`` (the grid's final val or test mIoU per candidate)."""
    names = list(histories)
    out = []
    for rung, budget in enumerate(budgets):
        scores = [score(histories[n], budget, rule) for n in names]
        rho = scipy.stats.spearmanr(scores, [final[n] for n in names], nan_policy="omit")
        value = float(rho.statistic)
        out.append({"rung": rung, "epochs": budget, "rho": None if np.isnan(value) else value})
    return out


def consistency(search: Mapping, replayed: Mapping) -> dict:
    """Whether the real search's rung files are the replay of the grid's histories: the same
    candidates, promotions and scores (largest score difference), and the same winner."""
    real = pd.DataFrame(search["rungs"])
    worst, same, count = 0.0, True, 0
    for number, bracket in enumerate(replayed["brackets"]):
        for rung in bracket:
            rows = real[(real["bracket"] == number) & (real["rung"] == rung["rung"])]
            same &= list(rows["candidate"]) == list(rung["scores"])
            same &= list(rows.loc[rows["promoted"] == "yes", "candidate"]) == rung["promoted"]
            for name, value in zip(rows["candidate"], rows["val_miou"], strict=True):
                worst = max(worst, abs(value - rung["scores"].get(name, math.inf)))
                count += 1
    return {
        "same_decisions": bool(same and search["winner"] == replayed["winner"]),
        "rungs": count,
        "max_score_difference": worst,
    }


def rule_comparison(
    grid: Mapping, histories: Mapping[str, Sequence[float]], goal_ratio: float
) -> dict:
    """Per promotion rule, every search of :func:`configurations` replayed with it: how many
    found the grid's winner or one within its interval, the mean regret, and the mean
    Spearman rho between the candidates' scores and the grid's final validation mIoU over
    every epoch before the last."""
    high = len(next(iter(histories.values())))
    final = {n: grid["runs"][n]["val_miou"] for n in histories}
    out: dict = {"first_budgets": list(REPLAY_FIRST), "etas": list(REPLAY_ETA), "rules": {}}
    for rule in RULES:
        cases = configurations(grid, histories, goal_ratio, rule)
        rhos = [r["rho"] for r in rank_correlations(histories, range(1, high), final, rule)]
        out["rules"][rule] = {
            "searches": len(cases),
            "same_winner": sum(c["same_winner"] for c in cases),
            "held_up": sum(c["held_up"] for c in cases),
            "mean_regret": float(np.mean([c["regret"] for c in cases])),
            "mean_rho": float(np.mean([r for r in rhos if r is not None])),
        }
    return out


def configurations(
    grid: Mapping, histories: Mapping[str, Sequence[float]], goal_ratio: float,
    rule: str = "best",
) -> list[dict]:  # fmt: skip
    """Every search replayed from the grid's histories with promotion by ``rule``: eta in
    :data:`REPLAY_ETA`, first budget in :data:`REPLAY_FIRST`, 1 bracket (plain successive
    halving) to one fewer than the rungs; per search its ladder, brackets, winner, whether it
    is the grid's or within its interval, its regret and its epochs against the grid's."""
    high = len(next(iter(histories.values())))
    out = []
    for eta in REPLAY_ETA:
        for low in REPLAY_FIRST:
            budgets = rung_budgets(low, high, eta)
            for brackets in range(1, len(budgets)):
                starts = list(range(brackets))
                result = verdict(grid, replay(histories, budgets, starts, eta, rule), goal_ratio)
                out.append(
                    {
                        "eta": eta,
                        "ladder": budgets,
                        "brackets": brackets,
                        **{k: result[k] for k in ("winner", "same_winner", "held_up")},
                        "regret": result["regret"]["test_miou_difference"],
                        "epochs_ratio": result["epochs_ratio"],
                    }
                )
    return out


def analyze(record: Mapping, goal_ratio: float, replay_only: bool = False) -> dict:
    """Everything the benchmark reports of one dataset (see the module's docstring);
    ``replay_only``: the record's search has only its first rung (the candidates' declared
    order), and there is no real search to check the replay against."""
    search, budget = record["search"], record["search_budget"]
    grid = {
        **record["grid"],
        "regrets": {n: regret(record["grid"], n) for n in record["grid"]["runs"]},
    }
    # The candidates in declared order (the first rung's), which breaks ties as the search does.
    order = [r["candidate"] for r in search["rungs"] if r["bracket"] == 0 and r["rung"] == 0]
    assert sorted(order) == sorted(grid["runs"]), "the search and the grid differ in candidates"
    histories = {n: grid["runs"][n]["history_val_miou"] for n in order}
    budgets = rung_budgets(budget["min_epochs"], budget["max_epochs"], budget["eta"])
    firsts = list(range(budget["brackets"]))
    searches = {
        "plain_short": [0],
        "plain_long": [1],
        "brackets": firsts,
    }
    by_rule = {}
    for rule in RULES:
        by_rule[rule] = {
            name: verdict(grid, replay(histories, budgets, starts, budget["eta"], rule), goal_ratio)
            for name, starts in searches.items()
        }
    finals = {
        split: {n: r[f"{split}_miou"] for n, r in grid["runs"].items()} for split in ("val", "test")
    }
    return {
        "ladder": budgets,
        "consistency": None
        if replay_only
        else consistency(search, replay(histories, budgets, firsts, budget["eta"], "best")),
        "searches": {
            name: {**result, "first_budget": budgets[searches[name][0]]}
            for name, result in by_rule["best"].items()
        },
        "rank_correlation": {
            rule: {
                split: rank_correlations(histories, budgets, finals[split], rule)
                for split in finals
            }
            for rule in RULES
        },
        "promotion_rules": {
            "this_search": {
                rule: {
                    n: {k: v[k] for k in ("winner", "same_winner", "held_up")}
                    for n, v in by_rule[rule].items()
                }
                for rule in RULES
            },  # fmt: skip
            "searches_replayed": rule_comparison(grid, histories, goal_ratio),
        },
        "configurations_replayed": configurations(grid, histories, goal_ratio),
        "grid_winner_by_history": max(histories, key=lambda n: score(histories[n], 10**9, "best")),
    }


def summary(records: Mapping[str, Mapping], seeds: Sequence[Mapping] = ()) -> dict:
    """Across the datasets' records (name -> record with its analysis) and the records of
    ``--seed`` (``seeds``): per dataset whether each search held up; per promotion rule the
    replayed searches of every record that held up and the mean regret; the replayed search
    configurations that held up on every dataset, cheapest first (each at its largest fraction
    of a grid's epochs), and those that held up on every dataset with every seed."""
    rules: dict = {}
    for record in [*records.values(), *seeds]:
        analysis = record["analysis"]
        for rule, result in analysis["promotion_rules"]["searches_replayed"]["rules"].items():
            total = rules.setdefault(rule, {"searches": 0, "held_up": 0, "regrets": []})
            total["searches"] += result["searches"]
            total["held_up"] += result["held_up"]
            total["regrets"].append(result["mean_regret"])
    everywhere = held_everywhere(list(records.values()))
    every_seed = held_everywhere([*records.values(), *seeds]) if seeds else []
    searches = next(iter(records.values()))["analysis"]["searches"]
    return {
        "brackets": next(iter(records.values()))["search_budget"]["brackets"],
        "first_budgets": {name: result["first_budget"] for name, result in searches.items()},
        "datasets": {
            name: {
                search: result["held_up"]
                for search, result in record["analysis"]["searches"].items()
            }
            | {"goal": record["analysis"]["searches"]["brackets"]["meets_goal"]}
            for name, record in records.items()
        },
        "rules": {
            rule: {
                "searches": t["searches"],
                "held_up": t["held_up"],
                "mean_regret": float(np.mean(t["regrets"])),
            }
            for rule, t in rules.items()
        },
        "held_everywhere": everywhere,
        "held_every_seed": every_seed,
        "records": len(records) + len(seeds),
    }


def held_everywhere(records: Sequence[Mapping]) -> list[dict]:
    """The replayed search configurations that held up in every record, cheapest first (each
    at its largest fraction of a grid's epochs)."""
    held: dict = {}
    for record in records:
        for case in record["analysis"]["configurations_replayed"]:
            key = (case["eta"], tuple(case["ladder"]), case["brackets"])
            held.setdefault(key, []).append((case["held_up"], case["epochs_ratio"]))
    everywhere = [
        {"eta": eta, "ladder": list(ladder), "brackets": brackets,
         "epochs_ratio": max(r for _, r in cases)}
        for (eta, ladder, brackets), cases in held.items()
        if len(cases) == len(records) and all(ok for ok, _ in cases)
    ]  # fmt: skip
    return sorted(everywhere, key=lambda c: (c["epochs_ratio"], c["brackets"]))


def seed_summary(seeds: Mapping[int, Mapping[str, Mapping]]) -> dict:
    """Per seed (``--seed``: the grid trained again, the searches replayed from its histories)
    and dataset: the grid's winner, and per search whether it held up and at what fraction of
    the grid's epochs; the brackets' verdict against the goal."""
    return {
        str(seed): {
            name: {
                "grid_winner": record["grid"]["winner"],
                "searches": {
                    search: {k: result[k] for k in ("winner", "held_up", "epochs_ratio")}
                    for search, result in record["analysis"]["searches"].items()
                },
                "goal": record["analysis"]["searches"]["brackets"]["meets_goal"],
            }
            for name, record in sorted(datasets.items())
        }
        for seed, datasets in sorted(seeds.items())
    }
