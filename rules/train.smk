rule train:
    """Train the smp model; best (by val mIoU) and last checkpoints plus per-epoch history."""
    input:
        train="results/split/train.csv",
        val="results/split/val.csv",
    output:
        best="results/train/best.pt",
        last="results/train/last.pt",
        history="results/train/history.csv",
    log:
        "logs/train/train.log",
    benchmark:
        "benchmarks/train/train.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("train", "threads")
    resources:
        mem_mb=res("train", "mem_mb"),
        runtime=res("train", "runtime"),
    params:
        train=config["train"],
        classes=config["classes"],
        ignore_index=config["ignore_index"],
        # Not an output: Snakemake must not delete it before a rerun, so training resumes.
        resume_dir="results/train/resume",
    script:
        "../scripts/train.py"
