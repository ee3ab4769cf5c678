rule predict:
    """Class-id masks at original size and colour overlays for one split of one model; the fold
    ensemble (`<run>/ensemble`) averages its fold models' class probabilities."""
    input:
        unpack(lambda wildcards: model_arrays(wildcards.model, wildcards.split)),
        checkpoints=lambda wildcards: checkpoints(wildcards.model),
        manifest=lambda wildcards: model_manifest(wildcards.model, wildcards.split),
    output:
        predictions=directory("results/runs/{model}/predict/{split}"),
    log:
        "logs/predict/{model}/{split}.log",
    benchmark:
        "benchmarks/predict/{model}/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: model_res("predict", "threads")
    resources:
        mem_mb=model_res("predict", "mem_mb"),
        runtime=model_res("predict", "runtime"),
        # Slurm: --gpus=[gpu_model:]1 (one process, one GPU); ignored locally.
        gpu=1,
        gpu_model=model_res("predict", "gpu_model"),
    params:
        predict=lambda wildcards: {
            k: v
            for k, v in run_option("predict")(wildcards).items()
            if k != "ensemble"
        },
        device=run_option("train", "device"),
        amp=run_option("train", "amp"),
    script:
        "../scripts/predict.py"
