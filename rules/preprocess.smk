rule preprocess:
    """Decode and resize a split once into one memory-mapped uint8 array (RGB + mask), once per
    split setting and image size of the runs."""
    input:
        manifest=lambda wildcards: getattr(rules.split.output, wildcards.split).format(
            **wildcards
        ),
    output:
        array=paths.preprocessed(),
    log:
        paths.log("preprocess", "{splitting}/{size}/{split}"),
    benchmark:
        paths.benchmark("preprocess", "{splitting}/{size}/{split}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("preprocess", "threads")
    resources:
        mem_mb=res("preprocess", "mem_mb"),
        runtime=res("preprocess", "runtime"),
    params:
        # <size>: squashed to size x size; x<scale>: aspect kept at scale, the padding ignored.
        image_size=lambda wildcards: paths.size_options(wildcards.size)[0],
        scale=lambda wildcards: paths.size_options(wildcards.size)[1],
        ignore_index=config["ignore_index"],
    script:
        "../scripts/preprocess.py"
