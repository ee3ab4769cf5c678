rule split:
    """Seeded, stratified train/val/test manifests (honouring official lists when present)."""
    input:
        index="results/remap/index.csv",
    output:
        train="results/split/train.csv",
        val="results/split/val.csv",
        test="results/split/test.csv",
        classes="results/split/classes.csv",
    log:
        "logs/split/split.log",
    benchmark:
        "benchmarks/split/split.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("split", "threads")
    resources:
        mem_mb=res("split", "mem_mb"),
        runtime=res("split", "runtime"),
    params:
        split=config["split"],
        classes=verbatim(config["classes"]),
    script:
        "../scripts/split.py"
