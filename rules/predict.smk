rule predict:
    """Class-id masks at original size and colour overlays for one split."""
    input:
        checkpoint="results/train/best.pt",
        manifest="results/split/{split}.csv",
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
    params:
        predict=config["predict"],
        device=config["train"]["device"],
    script:
        "../scripts/predict.py"
