rule predict:
    """Class-id masks at original size and colour overlays for one split of one model; the fold
    ensemble (`<run>/ensemble`) averages its fold models' class probabilities."""
    input:
        unpack(lambda wildcards: LAYOUT.model_arrays(wildcards.model, wildcards.split)),
        checkpoints=lambda wildcards: LAYOUT.checkpoints(wildcards.model),
        manifest=lambda wildcards: LAYOUT.model_manifest(
            wildcards.model, wildcards.split
        ),
    output:
        predictions=directory("results/runs/{model}/predict/{split}"),
    log:
        "logs/predict/{model}/{split}.log",
    benchmark:
        "benchmarks/predict/{model}/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("predict", "threads", of_run=True)
    resources:
        mem_mb=res("predict", "mem_mb", of_run=True),
        runtime=res("predict", "runtime", of_run=True),
        # Slurm: --gpus=[gpu_model:]1 (one process, one GPU); ignored locally.
        gpu=1,
        gpu_model=res("predict", "gpu_model", of_run=True),
    params:
        # batch_size, overlay_alpha and the predict.tta flips the probabilities are averaged over.
        predict=lambda wildcards: predict_options(run_option("predict")(wildcards)),
        runtime=lambda wildcards: untracked("predict", run_option("predict")(wildcards)),
        device=run_option("train", "device"),
        amp=run_option("train", "amp"),
    script:
        "../scripts/predict.py"


use rule predict as predict_no_tta with:
    output:
        predictions=directory("results/runs/{model}/predict_no_tta/{split}"),
    log:
        "logs/predict_no_tta/{model}/{split}.log",
    benchmark:
        "benchmarks/predict_no_tta/{model}/{split}.tsv"
    params:
        # Without the flips: a run with predict.tta is evaluated both ways.
        predict=lambda wildcards: predict_options(
            run_option("predict")(wildcards), tta=False
        ),
        runtime=lambda wildcards: untracked("predict", run_option("predict")(wildcards)),
        device=run_option("train", "device"),
        amp=run_option("train", "amp"),
