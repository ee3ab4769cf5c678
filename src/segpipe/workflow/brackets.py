"""Hyperband brackets of a search (config/schema.yaml: search.brackets): which rungs each
bracket runs.

A search's rung budgets form one ladder, ``rung_budgets(min_epochs, max_epochs, eta)``: rung
``k`` trains a candidate to ``ladder[k]`` epochs in all, from its rung ``k - 1`` checkpoint, on
the learning-rate schedule of ``max_epochs``. Bracket ``b`` (0 .. brackets - 1) is a
successive-halving search over all the candidates that starts at rung ``b``: its first rung
trains every candidate to ``ladder[b]`` epochs, each of its rungs keeps the best ceil(n / eta)
for the next, and its last rung (``ladder[-1]`` = max_epochs) marks the bracket's best. Bracket
0 is the plain search; a later bracket decides first after more epochs, so one short first
budget cannot decide the whole search. The winner is the best of the brackets' last rungs by
validation mIoU (segpipe.evaluation.rungs.write_selection).

A candidate's rung ``k`` is the same training in every bracket (the same budget, the same
schedule), so it trains once whichever brackets need it: brackets cost the epochs they add.

Pure: values from a validated config, problems one line each naming the option.
"""

from __future__ import annotations

from segpipe.workflow.search import Search, rung_budgets, rung_count


def ladder(search: Search) -> list[int]:
    """The cumulative epochs of every rung the search can train, shared by its brackets."""
    return rung_budgets(search.min_epochs, search.max_epochs, search.eta)


def bracket_rungs(search: Search) -> list[list[int]]:
    """Per bracket, the rungs (indices into :func:`ladder`) it decides: bracket b runs rungs
    b .. the last; (1, 27, 3) with 2 brackets -> [[0, 1, 2, 3], [1, 2, 3]]."""
    last = len(ladder(search))
    return [list(range(bracket, last)) for bracket in range(search.brackets)]


def bracket_problems(search: Search | None) -> list[str]:
    """Why ``search.brackets`` cannot be run: a bracket that would start at the last rung
    (it would train every candidate to max_epochs: the full grid, no search). Budgets that
    give a single rung are search_problems' to report."""
    if search is None or search.brackets == 1:
        return []
    rungs = rung_count(search.min_epochs, search.max_epochs, search.eta)
    if rungs < 2 or search.brackets < rungs:
        return []
    budgets = " -> ".join(str(b) for b in ladder(search))
    return [
        f"config option 'search.brackets': {search.brackets} brackets over the {rungs} rungs "
        f"{budgets} would start bracket {rungs - 1} at the last rung (every candidate trained "
        f"to max_epochs, the full grid); use at most {rungs - 1}, or a smaller min_epochs or a "
        "larger max_epochs for more rungs"
    ]
