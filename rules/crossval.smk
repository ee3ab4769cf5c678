localrules:
    crossval,


rule crossval:
    """Cross-validation summary of a run with split.folds: each fold's validation and test
    scores, their mean and standard deviation, the fold ensemble's test scores, and every pool
    image's out-of-fold scores."""
    input:
        unpack(lambda wildcards: LAYOUT.crossval_inputs(wildcards.run)),
    output:
        metrics=paths.crossval_file("metrics.json"),
        folds=paths.crossval_file("folds.csv"),
        per_image=paths.crossval_file("per_image.csv"),
    log:
        paths.log("crossval", "{run}"),
    benchmark:
        paths.benchmark("crossval", "{run}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("report", "threads", of_run=True)
    resources:
        mem_mb=res("report", "mem_mb", of_run=True),
        runtime=res("report", "runtime", of_run=True),
    params:
        classes=verbatim(config["classes"]),
    script:
        "../scripts/crossval.py"
