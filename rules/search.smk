include: "search_common.smk"


localrules:
    search_rung,
    search_select,
    search_winner,
    search_report,


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
        previous=lambda wildcards: previous_rung(wildcards.run, int(wildcards.rung)),
    output:
        best=paths.rung_file("best.pt"),
        last=paths.rung_file("last.pt"),
        history=paths.rung_file("history.csv"),
        model=paths.rung_file("model.json"),
    log:
        paths.log("search_train", "{run}/rung{rung}"),
    benchmark:
        paths.benchmark("search_train", "{run}/rung{rung}")
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
        train=lambda wildcards: jobs.training(
            RUNS[wildcards.run].config, rung_options(wildcards)
        ).tracked,
        untracked=untracked_of(jobs.training),
        pretrained=lambda wildcards: Untracked(
            {"weights_cache": LAYOUT.weights_cache(wildcards.run)}
        ),
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        resume_dir=lambda wildcards: paths.rung_file(
            "resume", wildcards.run, wildcards.rung
        ),
    script:
        "../scripts/search_train.py"


checkpoint search_rung:
    """Score every candidate a bracket trains in a rung at the rung's budget (its best
    validation mIoU so far) and promote the top ceil(n / eta) to the bracket's next rung; in
    the last rung, the bracket's best."""
    input:
        histories=lambda wildcards: [
            paths.rung_file("history.csv", run, wildcards.rung)
            for run in rung_candidates(int(wildcards.bracket), int(wildcards.rung))
        ],
    output:
        rung=paths.RUNG_FILE,
    log:
        paths.log("search_rung", "bracket{bracket}/rung{rung}"),
    benchmark:
        paths.benchmark("search_rung", "bracket{bracket}/rung{rung}")
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
        last=last_rung_files(SEARCH_BUDGETS, BRACKETS),
    output:
        selection=paths.SELECTION_FILE,
    log:
        paths.log("search_select", "search_select"),
    benchmark:
        paths.benchmark("search_select", "search_select")
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
        best=paths.train_file("best.pt"),
        last=paths.train_file("last.pt"),
        history=paths.train_file("history.csv"),
        model=paths.train_file("model.json"),
    log:
        paths.log("search_winner", "{model}"),
    benchmark:
        paths.benchmark("search_winner", "{model}")
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
        html=paths.SEARCH_REPORT,
        figures=directory(paths.SEARCH_FIGURES),
    log:
        paths.log("search_report", "search_report"),
    benchmark:
        paths.benchmark("search_report", "search_report")
    conda:
        "../envs/segpipe.yaml"
    params:
        runs=list(RUNS),
        max_epochs=SEARCH.max_epochs if SEARCH else 0,
        eta=SEARCH.eta if SEARCH else 0,
        title=config["report"]["title"],
        winner_report=lambda wildcards: paths.relative(
            paths.report_file("report.html", search_winner()), paths.SEARCH_DIR
        ),
    script:
        "../scripts/search_report.py"
