rule evaluate:
    """Per-class IoU/Dice, pixel accuracy, confusion matrix and per-image metrics for one split."""
    input:
        manifest="results/split/{split}.csv",
        predictions="results/predict/{split}",
    output:
        metrics="results/evaluate/{split}/metrics.json",
        per_class="results/evaluate/{split}/per_class.csv",
        confusion="results/evaluate/{split}/confusion.csv",
        confusion_normalized="results/evaluate/{split}/confusion_normalized.csv",
        confusion_counts="results/evaluate/{split}/confusion_counts.csv",
        per_image="results/evaluate/{split}/per_image.csv",
    log:
        "logs/evaluate/{split}.log",
    benchmark:
        "benchmarks/evaluate/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("evaluate", "threads")
    resources:
        mem_mb=res("evaluate", "mem_mb"),
        runtime=res("evaluate", "runtime"),
    params:
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        foreground_classes=config["evaluate"]["foreground_classes"],
    script:
        "../scripts/evaluate.py"
