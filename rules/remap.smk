rule remap:
    """Check every pair (full decode), map mask values to class ids; masks, index, quarantine list."""
    input:
        # Not a folder's root: its timestamp misses edits below it (see dataset_input).
        dataset=dataset_input(),
    output:
        masks=directory(paths.REMAP_MASKS),
        index=paths.REMAP_INDEX,
        quarantine=paths.REMAP_QUARANTINE,
    log:
        paths.log("remap", "remap"),
    benchmark:
        paths.benchmark("remap", "remap")
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
