localrules:
    synthesize,
    download,


rule synthesize:
    """Generate the offline demo dataset in the Oxford layout and pack it into the two archives."""
    output:
        images=paths.SYNTHESIZE_IMAGES,
        annotations=paths.SYNTHESIZE_ANNOTATIONS,
        resources=paths.SYNTHESIZE_RESOURCES,
    log:
        paths.log("synthesize", "synthesize"),
    benchmark:
        paths.benchmark("synthesize", "synthesize")
    conda:
        "../envs/segpipe.yaml"
    threads: 1
    resources:
        mem_mb=res("download", "mem_mb"),
        runtime=res("download", "runtime"),
    params:
        synthetic=config["dataset"]["synthetic"],
    script:
        "../scripts/synthesize.py"


rule download:
    """Fetch the dataset archives (checksum-verified, resumable) and extract them safely."""
    input:
        resources=(rules.synthesize.output.resources if SOURCE == "synthetic" else []),
    output:
        dataset=directory(paths.DOWNLOAD_DATASET),
    log:
        paths.log("download", "download"),
    benchmark:
        paths.benchmark("download", "download")
    conda:
        "../envs/segpipe.yaml"
    threads: res("download", "threads")
    resources:
        mem_mb=res("download", "mem_mb"),
        runtime=res("download", "runtime"),
    params:
        resources=download_resources(config["dataset"]),
        cache_dir=paths.DOWNLOAD_ARCHIVES,
        # retries and timeout, untracked (segpipe.params): a change reruns nothing.
        untracked=jobs.dataset(config).untracked,
    script:
        "../scripts/download.py"
