rule evaluate:
    """Per-class IoU/Dice, pixel accuracy, confusion matrix and per-image metrics for one split of
    one run."""
    input:
        manifest=lambda wildcards: split_manifest(wildcards.run, wildcards.split),
        predictions="results/runs/{run}/predict/{split}",
    output:
        metrics="results/runs/{run}/evaluate/{split}/metrics.json",
        per_class="results/runs/{run}/evaluate/{split}/per_class.csv",
        confusion="results/runs/{run}/evaluate/{split}/confusion.csv",
        confusion_normalized="results/runs/{run}/evaluate/{split}/confusion_normalized.csv",
        confusion_counts="results/runs/{run}/evaluate/{split}/confusion_counts.csv",
        per_image="results/runs/{run}/evaluate/{split}/per_image.csv",
    log:
        "logs/evaluate/{run}/{split}.log",
    benchmark:
        "benchmarks/evaluate/{run}/{split}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: run_res("evaluate", "threads")
    resources:
        mem_mb=run_res("evaluate", "mem_mb"),
        runtime=run_res("evaluate", "runtime"),
    params:
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        foreground_classes=run_option("evaluate", "foreground_classes"),
    script:
        "../scripts/evaluate.py"
