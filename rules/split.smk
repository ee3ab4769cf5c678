rule split:
    """Seeded, stratified train/val/test manifests (honouring official lists when present), once
    per distinct split setting of the runs."""
    input:
        index="results/remap/index.csv",
    output:
        train="results/split/{splitting}/train.csv",
        val="results/split/{splitting}/val.csv",
        test="results/split/{splitting}/test.csv",
        classes="results/split/{splitting}/classes.csv",
    log:
        "logs/split/{splitting}.log",
    benchmark:
        "benchmarks/split/{splitting}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("split", "threads")
    resources:
        mem_mb=res("split", "mem_mb"),
        runtime=res("split", "runtime"),
    params:
        split=lambda wildcards: SPLITTINGS[wildcards.splitting],
        classes=verbatim(config["classes"]),
    script:
        "../scripts/split.py"
