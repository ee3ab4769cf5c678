localrules:
    crossval,


rule crossval:
    """Cross-validation summary of a run with split.folds: each fold's validation and test
    scores, their mean and standard deviation, the fold ensemble's test scores, and every pool
    image's out-of-fold scores."""
    input:
        unpack(lambda wildcards: crossval_inputs(wildcards.run)),
    output:
        metrics="results/runs/{run}/crossval/metrics.json",
        folds="results/runs/{run}/crossval/folds.csv",
        per_image="results/runs/{run}/crossval/per_image.csv",
    log:
        "logs/crossval/{run}.log",
    benchmark:
        "benchmarks/crossval/{run}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: run_res("report", "threads")
    resources:
        mem_mb=run_res("report", "mem_mb"),
        runtime=run_res("report", "runtime"),
    params:
        classes=verbatim(config["classes"]),
    script:
        "../scripts/crossval.py"
