rule remap:
    """Check every pair (full decode), map mask values to class ids; masks, index, quarantine list."""
    input:
        # Downloads: the dataset directory the download rule wrote. A user's folder: each file
        # remap reads (not the root: its timestamp misses edits below it, and catches files remap
        # never reads).
        dataset=(dataset_dir() if SOURCE != "folder" else []),
        files=dataset_contents,
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
        root=dataset_dir(),
        options=remap_params(),
    script:
        "../scripts/remap.py"
