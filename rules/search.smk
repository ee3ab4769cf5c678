localrules:
    search_rung,
    search_winner,
    search_report,


rule search_train:
    """One rung of a successive-halving search for one candidate (a run): train it up to the
    rung's cumulative budget of epochs on the learning-rate schedule of the whole search,
    starting from its previous rung's last checkpoint. Only promoted candidates get the next
    rung's job (checkpoint search_rung)."""
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
        train=lambda wildcards: tracked("train", rung_options(wildcards)),
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
    """Score every candidate of a rung at the rung's budget (its best validation mIoU so far)
    and promote the top ceil(n / eta) to the next rung; in the last rung, the winner."""
    input:
        histories=lambda wildcards: [
            f"results/search/{run}/rung{wildcards.rung}/history.csv"
            for run in rung_candidates(int(wildcards.rung))
        ],
    output:
        rung="results/search/rung{rung}.csv",
    log:
        "logs/search_rung/rung{rung}.log",
    benchmark:
        "benchmarks/search_rung/rung{rung}.tsv"
    conda:
        "../envs/segpipe.yaml"
    params:
        candidates=lambda wildcards: rung_candidates(int(wildcards.rung)),
        epochs=lambda wildcards: SEARCH_BUDGETS[int(wildcards.rung)],
        eta=SEARCH.eta if SEARCH else 0,
        last=lambda wildcards: int(wildcards.rung) == len(SEARCH_BUDGETS) - 1,
    script:
        "../scripts/search_rung.py"


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
    """The search on one page: every rung (who was promoted, with scores), the epochs spent
    against the full grid over the same candidates, and every candidate's learning curve to
    where it stopped."""
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
