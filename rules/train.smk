rule train:
    """Train one model of a run (the run's, or one fold's) with smp; best (by val mIoU) and last
    checkpoints plus per-epoch history. Each model is its own job (on Slurm its own GPU job), so
    runs and folds train at the same time. A run that differs from an earlier one only in
    options that cannot change the model shares that run's training (no job of its own).
    """
    input:
        # The split's train and val arrays: a fold's parts are rows of both.
        unpack(lambda wildcards: LAYOUT.model_arrays(wildcards.model, "train")),
        # With train.encoder_weights: the record of the weights in the cache (rule pretrained).
        unpack(lambda wildcards: LAYOUT.weights_record(wildcards.model)),
        train=lambda wildcards: LAYOUT.model_manifest(wildcards.model, "train"),
        val=lambda wildcards: LAYOUT.model_manifest(wildcards.model, "val"),
    output:
        best=paths.train_file("best.pt"),
        last=paths.train_file("last.pt"),
        history=paths.train_file("history.csv"),
        model=paths.train_file("model.json"),
    log:
        paths.log("train", "{model}"),
    benchmark:
        paths.benchmark("train", "{model}")
    wildcard_constraints:
        model=TRAINED_MODELS,
    conda:
        "../envs/segpipe.yaml"
    threads: res("train", "threads", of_run=True)
    resources:
        mem_mb=res("train", "mem_mb", of_run=True),
        runtime=res("train", "runtime", of_run=True),
        # Slurm: --gpus=[gpu_model:]gpus on one node (snakemake-executor-plugin-slurm): the
        # DistributedDataParallel ranks are processes of this job. Ignored locally.
        gpu=run_option("train", "gpus"),
        gpu_model=res("train", "gpu_model", of_run=True),
        nodes=1,
    params:
        # What changes the model; num_workers and the loggers reach the job untracked
        # (segpipe.params): changing them reruns nothing.
        train=tracked_of(jobs.training),
        untracked=untracked_of(jobs.training),
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        # Not an output: Snakemake must not delete it before a rerun, so training resumes.
        resume_dir=lambda wildcards: paths.train_file("resume", wildcards.model),
        # pretrained.cache, read offline; untracked: moving the cache retrains nothing.
        pretrained=lambda wildcards: Untracked(
            {"weights_cache": LAYOUT.weights_cache(wildcards.model)}
        ),
    script:
        "../scripts/train.py"
