"""The glue of the successive-halving search and its brackets (rules/search.smk): which
candidates each bracket's rung trains, the winner, and each rule's inputs and params."""

from segpipe.evaluation.rungs import read_promoted, read_winner
from segpipe.workflow.search import (
    last_rung_files,
    previous_rung,
    rung_outputs,
    rung_train_options,
)


def rung_candidates(bracket, rung):
    """The candidates bracket ``bracket`` trains in rung ``rung``: every run in its first rung
    (rung number ``bracket``), then those its previous rung's file promotes (known once that
    rung is decided: a Snakemake checkpoint)."""
    if rung == bracket:
        return list(RUNS)
    previous = checkpoints.search_rung.get(bracket=str(bracket), rung=str(rung - 1))
    return read_promoted(previous.output.rung)


def search_winner():
    """The run the selection across the brackets' last rungs marks the winner."""
    return read_winner(checkpoints.search_select.get().output.selection)


def search_targets(wildcards):
    """What a search makes for the winner only: everything a run gets (predictions, scores with
    and without flips, its report). Rule all asks for the search report itself."""
    if SEARCH is None:
        return []
    winner = search_winner()
    return [
        paths.report_file("report.html", winner),
        *[f for f in LAYOUT.evaluations() if f.startswith(f"{paths.run_dir(winner)}/")],
    ]


# The runs whose train outputs search_winner writes, the winner's; none without a search.
SEARCH_RUNS = one_of(RUNS if SEARCH else [])


def rung_options(wildcards):
    """A candidate's train options in a rung: its run's, trained to the rung's budget on the
    schedule of the whole search (segpipe.workflow.search.rung_train_options)."""
    train = RUNS[wildcards.run].config["train"]
    return rung_train_options(train, SEARCH, int(wildcards.rung))


def winner_files(wildcards):
    """The winner's last rung: its checkpoints, history and model card."""
    winner = search_winner()
    if wildcards.model != winner:
        raise ValueError(
            f"run '{wildcards.model}' was stopped by the search (see {paths.SEARCH_DIR}/); "
            f"only the winner, '{winner}', is trained in full"
        )
    return rung_outputs(winner, len(SEARCH_BUDGETS) - 1)


def search_report_inputs(wildcards):
    """Every rung's file (bracket by bracket, in rung order), the selection, and each
    candidate's history of the highest rung any bracket trained it in. The selection is asked
    for first: the winner_report param reads it, and a param may only wait for a checkpoint
    that the job's input waits for."""
    search_winner()
    rungs, reached = [], {}
    for bracket, numbers in enumerate(BRACKETS):
        for rung in numbers:
            rungs.append(paths.RUNG_FILE.format(bracket=bracket, rung=rung))
            for run in rung_candidates(bracket, rung):
                reached[run] = max(reached.get(run, 0), rung)
    return {
        "rungs": rungs,
        "selection": paths.SELECTION_FILE,
        "histories": [
            paths.rung_file("history.csv", run, reached[run]) for run in RUNS
        ],
    }
