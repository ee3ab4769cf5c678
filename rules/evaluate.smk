rule evaluate:
    """Per-class IoU/Dice, pixel accuracy, confusion matrix and per-image metrics for one split of
    one model (a run's, a fold's, the fold ensemble's), from the model's predict folder; with
    predict.tta, evaluate_no_tta scores the same model's predictions without the flips. On
    Slurm these jobs run inside the model's assessment job (group assess_<model>, profiles/slurm).
    """
    input:
        manifest=lambda wildcards: LAYOUT.model_manifest(
            wildcards.model, wildcards.split
        ),
        predictions=rules.predict.output.predictions,
    output:
        metrics=paths.evaluated("metrics.json"),
        per_class=paths.evaluated("per_class.csv"),
        confusion=paths.evaluated("confusion.csv"),
        confusion_normalized=paths.evaluated("confusion_normalized.csv"),
        confusion_counts=paths.evaluated("confusion_counts.csv"),
        per_image=paths.evaluated("per_image.csv"),
    log:
        paths.log("evaluate", "{model}/{split}"),
    benchmark:
        paths.benchmark("evaluate", "{model}/{split}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("evaluate", "threads", of_run=True)
    resources:
        mem_mb=res("evaluate", "mem_mb", of_run=True),
        runtime=res("evaluate", "runtime", of_run=True),
    params:
        # The split's predictions with the configured flips, in the model's predict folder.
        tta=True,
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        foreground_classes=run_option("evaluate", "foreground_classes"),
    script:
        "../scripts/evaluate.py"


use rule evaluate as evaluate_no_tta with:
    input:
        manifest=lambda wildcards: LAYOUT.model_manifest(
            wildcards.model, wildcards.split
        ),
        predictions=rules.predict.output.predictions,
    output:
        metrics=paths.evaluated("metrics.json", "evaluate_no_tta"),
        per_class=paths.evaluated("per_class.csv", "evaluate_no_tta"),
        confusion=paths.evaluated("confusion.csv", "evaluate_no_tta"),
        confusion_normalized=paths.evaluated(
            "confusion_normalized.csv", "evaluate_no_tta"
        ),
        confusion_counts=paths.evaluated("confusion_counts.csv", "evaluate_no_tta"),
        per_image=paths.evaluated("per_image.csv", "evaluate_no_tta"),
    log:
        paths.log("evaluate_no_tta", "{model}/{split}"),
    benchmark:
        paths.benchmark("evaluate_no_tta", "{model}/{split}")
    params:
        # With predict.tta: the same model's predictions without the flips (predict/no_tta).
        tta=False,
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        foreground_classes=run_option("evaluate", "foreground_classes"),
