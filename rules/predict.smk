rule predict:
    """Class-id masks at original size and colour overlays for one split."""
    input:
        checkpoint="results/train/best.pt",
        manifest="results/split/{split}.csv",
        array="results/preprocess/{split}.npy",
    output:
        predictions=directory("results/predict/{split}"),
    log:
        "logs/predict/{split}.log",
    benchmark:
        "benchmarks/predict/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("predict", "threads")
    resources:
        mem_mb=res("predict", "mem_mb"),
        runtime=res("predict", "runtime"),
        # Slurm: --gpus=[gpu_model:]1 (one process, one GPU); ignored locally.
        gpu=1,
        gpu_model=res("predict", "gpu_model"),
    params:
        predict=config["predict"],
        device=config["train"]["device"],
        amp=config["train"]["amp"],
    script:
        "../scripts/predict.py"
