rule remap:
    """Check every pair (full decode), map mask values to class ids; masks, index, quarantine list."""
    input:
        # Not a folder's root: its timestamp misses edits below it (see dataset_input).
        dataset=dataset_input(),
    output:
        masks=directory("results/remap/masks"),
        index="results/remap/index.csv",
        quarantine="results/remap/quarantine.csv",
    log:
        "logs/remap/remap.log",
    benchmark:
        "benchmarks/remap/remap.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("remap", "threads")
    resources:
        mem_mb=res("remap", "mem_mb"),
        runtime=res("remap", "runtime"),
    params:
        root=verbatim(dataset_dir()),
        files=verbatim(dataset_fingerprint()),
        options=dataset_options(config),
    script:
        "../scripts/remap.py"
