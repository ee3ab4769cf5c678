rule train:
    """Train the smp model; best (by val mIoU) and last checkpoints plus per-epoch history."""
    input:
        train="results/preprocess/train.npy",
        val="results/preprocess/val.npy",
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
        # Slurm: --gpus=[gpu_model:]gpus on one node (snakemake-executor-plugin-slurm): the
        # DistributedDataParallel ranks are processes of this job. Ignored locally.
        gpu=config["train"]["gpus"],
        gpu_model=res("train", "gpu_model"),
        nodes=1,
    params:
        train=config["train"],
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        # Not an output: Snakemake must not delete it before a rerun, so training resumes.
        resume_dir="results/train/resume",
    script:
        "../scripts/train.py"
