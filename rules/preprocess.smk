rule preprocess:
    """Decode and resize a split once into one memory-mapped uint8 array (RGB + mask), once per
    split setting and image size of the runs."""
    input:
        manifest=lambda wildcards: getattr(rules.split.output, wildcards.split).format(
            **wildcards
        ),
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
        # <size>: squashed to size x size; x<scale>: aspect kept at scale, the padding ignored.
        image_size=lambda wildcards: (
            0 if wildcards.size.startswith("x") else int(wildcards.size)
        ),
        scale=lambda wildcards: (
            float(wildcards.size[1:]) if wildcards.size.startswith("x") else None
        ),
        ignore_index=config["ignore_index"],
    script:
        "../scripts/preprocess.py"
