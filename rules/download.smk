localrules:
    synthesize,
    download,


rule synthesize:
    """Generate the offline demo dataset in the Oxford layout and pack it into the two archives."""
    output:
        images="results/synthesize/images.tar.gz",
        annotations="results/synthesize/annotations.tar.gz",
        resources="results/synthesize/resources.json",
    log:
        "logs/synthesize/synthesize.log",
    benchmark:
        "benchmarks/synthesize/synthesize.tsv"
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
        dataset=directory("results/download/dataset"),
    log:
        "logs/download/download.log",
    benchmark:
        "benchmarks/download/download.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("download", "threads")
    resources:
        mem_mb=res("download", "mem_mb"),
        runtime=res("download", "runtime"),
    params:
        resources=download_resources(config["dataset"]),
        cache_dir="results/download/archives",
        # retries and timeout, untracked (segpipe.params): a change reruns nothing.
        runtime=untracked("dataset", config["dataset"]),
    script:
        "../scripts/download.py"
