rule preprocess:
    """Decode and resize a split once into one memory-mapped uint8 array (RGB + mask), once per
    split setting and image size of the runs."""
    input:
        manifest="results/split/{splitting}/{split}.csv",
    output:
        array="results/preprocess/{splitting}/{size}/{split}.npy",
    log:
        "logs/preprocess/{splitting}/{size}/{split}.log",
    benchmark:
        "benchmarks/preprocess/{splitting}/{size}/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("preprocess", "threads")
    resources:
        mem_mb=res("preprocess", "mem_mb"),
        runtime=res("preprocess", "runtime"),
    params:
        image_size=lambda wildcards: int(wildcards.size),
    script:
        "../scripts/preprocess.py"
