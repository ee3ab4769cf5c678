rule predict:
    """Class-id masks at original size and colour overlays for one split of one run."""
    input:
        checkpoint="results/runs/{run}/train/best.pt",
        manifest=lambda wildcards: split_manifest(wildcards.run, wildcards.split),
        array=lambda wildcards: preprocessed(wildcards.run, wildcards.split),
    output:
        predictions=directory("results/runs/{run}/predict/{split}"),
    log:
        "logs/predict/{run}/{split}.log",
    benchmark:
        "benchmarks/predict/{run}/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: run_res("predict", "threads")
    resources:
        mem_mb=run_res("predict", "mem_mb"),
        runtime=run_res("predict", "runtime"),
        # Slurm: --gpus=[gpu_model:]1 (one process, one GPU); ignored locally.
        gpu=1,
        gpu_model=run_res("predict", "gpu_model"),
    params:
        predict=run_option("predict"),
        device=run_option("train", "device"),
        amp=run_option("train", "amp"),
    script:
        "../scripts/predict.py"
