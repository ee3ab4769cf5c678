rule preprocess:
    """Decode and resize a split once into one memory-mapped uint8 array (RGB + mask)."""
    input:
        manifest="results/split/{split}.csv",
    output:
        array="results/preprocess/{split}.npy",
    log:
        "logs/preprocess/{split}.log",
    benchmark:
        "benchmarks/preprocess/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("preprocess", "threads")
    resources:
        mem_mb=res("preprocess", "mem_mb"),
        runtime=res("preprocess", "runtime"),
    params:
        image_size=config["train"]["image_size"],
    script:
        "../scripts/preprocess.py"
