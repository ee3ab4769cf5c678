rule split:
    """Seeded, stratified train/val/test manifests (honouring official lists when present)."""
    input:
        index="results/remap/index.csv",
    output:
        train="results/split/train.csv",
        val="results/split/val.csv",
        test="results/split/test.csv",
    params:
        split=config["split"],
    log:
        "logs/split/split.log",
    benchmark:
        "benchmarks/split/split.tsv"
    threads: res("split", "threads")
    resources:
        mem_mb=res("split", "mem_mb"),
        runtime=res("split", "runtime"),
    conda:
        "../envs/segpipe.yaml"
    script:
        "../scripts/split.py"
