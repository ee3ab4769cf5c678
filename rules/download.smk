localrules:
    synthesize,
    download,


rule synthesize:
    """Generate the offline demo dataset in the Oxford layout and pack it into the two archives."""
    output:
        images="results/synthesize/images.tar.gz",
        annotations="results/synthesize/annotations.tar.gz",
        resources="results/synthesize/resources.json",
    params:
        synthetic=config["dataset"]["synthetic"],
    log:
        "logs/synthesize/synthesize.log",
    benchmark:
        "benchmarks/synthesize/synthesize.tsv"
    threads: 1
    resources:
        mem_mb=res("download", "mem_mb"),
        runtime=res("download", "runtime"),
    conda:
        "../envs/segpipe.yaml"
    script:
        "../scripts/synthesize.py"


rule download:
    """Fetch the dataset archives (checksum-verified, resumable) and extract them safely."""
    input:
        resources=(rules.synthesize.output.resources if SOURCE == "synthetic" else []),
    output:
        dataset=directory("results/download/dataset"),
    params:
        resources=download_resources(),
        cache_dir="results/download/archives",
        retries=config["dataset"]["retries"],
        timeout=config["dataset"]["timeout"],
    log:
        "logs/download/download.log",
    benchmark:
        "benchmarks/download/download.tsv"
    threads: res("download", "threads")
    resources:
        mem_mb=res("download", "mem_mb"),
        runtime=res("download", "runtime"),
    conda:
        "../envs/segpipe.yaml"
    script:
        "../scripts/download.py"
