rule train:
    """Train one run's smp model; best (by val mIoU) and last checkpoints plus per-epoch history.
    Each run is its own job (on Slurm its own GPU job), so runs train at the same time.
    """
    input:
        train=lambda wildcards: preprocessed(wildcards.run, "train"),
        val=lambda wildcards: preprocessed(wildcards.run, "val"),
    output:
        best="results/runs/{run}/train/best.pt",
        last="results/runs/{run}/train/last.pt",
        history="results/runs/{run}/train/history.csv",
        model="results/runs/{run}/train/model.json",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: run_res("train", "threads")
    resources:
        mem_mb=run_res("train", "mem_mb"),
        runtime=run_res("train", "runtime"),
        # Slurm: --gpus=[gpu_model:]gpus on one node (snakemake-executor-plugin-slurm): the
        # DistributedDataParallel ranks are processes of this job. Ignored locally.
        gpu=run_option("train", "gpus"),
        gpu_model=run_res("train", "gpu_model"),
        nodes=1,
    params:
        train=run_option("train"),
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        # Not an output: Snakemake must not delete it before a rerun, so training resumes.
        resume_dir=lambda wildcards: f"{run_dir(wildcards.run)}/train/resume",
    script:
        "../scripts/train.py"
