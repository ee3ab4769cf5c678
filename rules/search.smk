from segpipe.evaluation.rungs import read_promoted, read_winner
from segpipe.workflow.brackets import bracket_problems, bracket_rungs, ladder
from segpipe.workflow.lr_peak import warmup_problems
from segpipe.workflow.search import schedule_epochs

# A search's brackets and a first rung that ends before the learning rate peaks, refused here.
if SEARCH and (
    _problems := bracket_problems(SEARCH)
    + warmup_problems(
        SEARCH.min_epochs,
        SEARCH.max_epochs,
        {name: run.config for name, run in RUNS.items()},
    )
):
    raise _config_error(_problems)
# The cumulative epoch budget of each rung, shared by the brackets; each bracket's rungs.
SEARCH_BUDGETS = ladder(SEARCH) if SEARCH else []
BRACKETS = bracket_rungs(SEARCH) if SEARCH else []
# Bracket b's decision at rung r (rule search_rung); the winner across brackets (search_select).
RUNG_FILE = "results/search/bracket{bracket}/rung{rung}.csv"
SELECTION_FILE = "results/search/winner.csv"


wildcard_constraints:
    rung="|".join(str(rung) for rung in range(len(SEARCH_BUDGETS))) or "(?!)",
    bracket="|".join(str(bracket) for bracket in range(len(BRACKETS))) or "(?!)",


localrules:
    search_rung,
    search_select,
    search_winner,
    search_report,


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
        f"{run_dir(winner)}/report/report.html",
        *[f for f in LAYOUT.evaluations() if f.startswith(f"{run_dir(winner)}/")],
    ]


# The runs whose train outputs search_winner writes, the winner's; none without a search.
SEARCH_RUNS = "|".join(re.escape(name) for name in RUNS) if SEARCH else "(?!)"


def rung_dir(run, rung):
    """Where rule search_train puts a candidate's rung (the same in every bracket)."""
    return f"results/search/{run}/rung{rung}"


def previous_rung(wildcards):
    """The checkpoints a candidate's rung starts from: its previous rung's; none in rung 0."""
    rung = int(wildcards.rung)
    if rung == 0:
        return []
    return [
        f"{rung_dir(wildcards.run, rung - 1)}/{name}" for name in ("last.pt", "best.pt")
    ]


def rung_train_options(wildcards):
    """A candidate's train options in a rung: its run's, trained to the rung's budget on the
    schedule of the whole search (segpipe.workflow.search.schedule_epochs)."""
    train = RUNS[wildcards.run].config["train"]
    return {
        **train,
        "epochs": SEARCH_BUDGETS[int(wildcards.rung)],
        "schedule_epochs": schedule_epochs(SEARCH, train["scheduler"]),
    }


def winner_files(wildcards):
    """The winner's last rung: its checkpoints, history and model card."""
    winner = search_winner()
    if wildcards.model != winner:
        raise ValueError(
            f"run '{wildcards.model}' was stopped by the search (see results/search/); "
            f"only the winner, '{winner}', is trained in full"
        )
    folder = rung_dir(winner, len(SEARCH_BUDGETS) - 1)
    names = {
        "best": "best.pt",
        "last": "last.pt",
        "history": "history.csv",
        "model": "model.json",
    }
    return {key: f"{folder}/{name}" for key, name in names.items()}


def last_rung_files():
    """Each bracket's last rung file, in bracket order."""
    last = len(SEARCH_BUDGETS) - 1
    return [RUNG_FILE.format(bracket=b, rung=last) for b in range(len(BRACKETS))]


def search_report_inputs(wildcards):
    """Every rung's file (bracket by bracket, in rung order), the selection, and each
    candidate's history of the highest rung any bracket trained it in. The selection is asked
    for first: the winner_report param reads it, and a param may only wait for a checkpoint
    that the job's input waits for."""
    search_winner()
    rungs, reached = [], {}
    for bracket, numbers in enumerate(BRACKETS):
        for rung in numbers:
            rungs.append(RUNG_FILE.format(bracket=bracket, rung=rung))
            for run in rung_candidates(bracket, rung):
                reached[run] = max(reached.get(run, 0), rung)
    return {
        "rungs": rungs,
        "selection": SELECTION_FILE,
        "histories": [f"{rung_dir(run, reached[run])}/history.csv" for run in RUNS],
    }


rule search_train:
    """One rung of a successive-halving search for one candidate (a run): train it up to the
    rung's cumulative budget of epochs on the learning-rate schedule of the whole search,
    starting from its previous rung's last checkpoint. Only candidates that a bracket trains in
    that rung get its job (checkpoint search_rung), once whichever brackets need it."""
    input:
        unpack(lambda wildcards: LAYOUT.model_arrays(wildcards.run, "train")),
        unpack(lambda wildcards: LAYOUT.weights_record(wildcards.run)),
        train=lambda wildcards: LAYOUT.model_manifest(wildcards.run, "train"),
        val=lambda wildcards: LAYOUT.model_manifest(wildcards.run, "val"),
        previous=previous_rung,
    output:
        best="results/search/{run}/rung{rung}/best.pt",
        last="results/search/{run}/rung{rung}/last.pt",
        history="results/search/{run}/rung{rung}/history.csv",
        model="results/search/{run}/rung{rung}/model.json",
    log:
        "logs/search_train/{run}/rung{rung}.log",
    benchmark:
        "benchmarks/search_train/{run}/rung{rung}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("train", "threads", of_run=True)
    resources:
        mem_mb=res("train", "mem_mb", of_run=True),
        runtime=res("train", "runtime", of_run=True),
        gpu=run_option("train", "gpus"),
        gpu_model=res("train", "gpu_model", of_run=True),
        nodes=1,
    params:
        # The run's train options, epochs: the rung's budget, schedule_epochs: the search's.
        train=lambda wildcards: tracked("train", rung_train_options(wildcards)),
        runtime=lambda wildcards: untracked("train", run_option("train")(wildcards)),
        pretrained=lambda wildcards: Untracked(
            {"weights_cache": LAYOUT.weights_cache(wildcards.run)}
        ),
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        resume_dir=lambda wildcards: f"results/search/{wildcards.run}/rung{wildcards.rung}/resume",
    script:
        "../scripts/search_train.py"


checkpoint search_rung:
    """Score every candidate a bracket trains in a rung at the rung's budget (its best
    validation mIoU so far) and promote the top ceil(n / eta) to the bracket's next rung; in
    the last rung, the bracket's best."""
    input:
        histories=lambda wildcards: [
            f"{rung_dir(run, wildcards.rung)}/history.csv"
            for run in rung_candidates(int(wildcards.bracket), int(wildcards.rung))
        ],
    output:
        rung=RUNG_FILE,
    log:
        "logs/search_rung/bracket{bracket}/rung{rung}.log",
    benchmark:
        "benchmarks/search_rung/bracket{bracket}/rung{rung}.tsv"
    conda:
        "../envs/segpipe.yaml"
    params:
        candidates=lambda wildcards: rung_candidates(
            int(wildcards.bracket), int(wildcards.rung)
        ),
        epochs=lambda wildcards: SEARCH_BUDGETS[int(wildcards.rung)],
        eta=SEARCH.eta if SEARCH else 0,
        last=lambda wildcards: int(wildcards.rung) == len(SEARCH_BUDGETS) - 1,
    script:
        "../scripts/search_rung.py"


checkpoint search_select:
    """The winner: the best by validation mIoU of the brackets' last rungs (ties: the first
    bracket's)."""
    input:
        last=last_rung_files(),
    output:
        selection=SELECTION_FILE,
    log:
        "logs/search_select/search_select.log",
    benchmark:
        "benchmarks/search_select/search_select.tsv"
    conda:
        "../envs/segpipe.yaml"
    script:
        "../scripts/search_select.py"


rule search_winner:
    """The winner's training, from its last rung, published as its run's train outputs: from
    there it gets everything a run gets (predict, evaluate, report, infer.images)."""
    input:
        unpack(winner_files),
    output:
        best="results/runs/{model}/train/best.pt",
        last="results/runs/{model}/train/last.pt",
        history="results/runs/{model}/train/history.csv",
        model="results/runs/{model}/train/model.json",
    log:
        "logs/search_winner/{model}.log",
    benchmark:
        "benchmarks/search_winner/{model}.tsv"
    wildcard_constraints:
        model=SEARCH_RUNS,
    conda:
        "../envs/segpipe.yaml"
    script:
        "../scripts/search_winner.py"


ruleorder: search_winner > train


rule search_report:
    """The search on one page: per bracket every rung (who was promoted, with scores) and the
    candidates' learning curves to where the bracket stopped them, the selection across the
    brackets, and the epochs spent against the full grid over the same candidates."""
    input:
        unpack(search_report_inputs),
    output:
        html="results/search/report.html",
        figures=directory("results/search/figures"),
    log:
        "logs/search_report/search_report.log",
    benchmark:
        "benchmarks/search_report/search_report.tsv"
    conda:
        "../envs/segpipe.yaml"
    params:
        runs=list(RUNS),
        max_epochs=SEARCH.max_epochs if SEARCH else 0,
        eta=SEARCH.eta if SEARCH else 0,
        title=config["report"]["title"],
        winner_report=lambda wildcards: f"../runs/{search_winner()}/report/report.html",
    script:
        "../scripts/search_report.py"
