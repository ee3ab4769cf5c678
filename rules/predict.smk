rule predict:
    """Class-id masks at original size (and with predict.overlays: all, colour overlays) of
    every split a model is scored on (val and test; a fold ensemble's test, averaging its fold models' class probabilities), and
    with predict.tta the same without the flips, from the same forward passes
    (predict/no_tta/<split>). One job per model loads its checkpoints once; on Slurm it is the
    GPU part of the model's one assessment job (group assess_<model> in profiles/slurm).
    """
    input:
        unpack(lambda wildcards: LAYOUT.predict_inputs(wildcards.model)),
    output:
        predictions=directory(paths.predict_dir()),
    log:
        paths.log("predict", "{model}"),
    benchmark:
        paths.benchmark("predict", "{model}")
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
        splits=lambda wildcards: list(LAYOUT.models[wildcards.model].splits),
        # Whether to write overlays (predict.overlays: all) and their overlay_alpha, the
        # predict.tta flips the probabilities are averaged over, sliding windows.
        predict=tracked_of(jobs.prediction),
        untracked=untracked_of(jobs.prediction),
    script:
        "../scripts/predict.py"
