localrules:
    report,


rule report:
    """One run's self-contained HTML report; key figures also go into `snakemake --report`."""
    input:
        # The test outputs of the model that stands for the run (with folds: the ensemble, else
        # fold 0), every trained model's history, the cross-validation summary (folds only),
        # the scores without the predict.tta flips (with flips only), the infer.images
        # predictions (when given, without experiments).
        unpack(lambda wildcards: LAYOUT.report_inputs(wildcards.run)),
    output:
        html=paths.report_file("report.html"),
        confusion=report(
            paths.report_file("figures/confusion.png"),
            caption="captions/confusion.rst",
            category="Evaluation",
            subcategory="{run}",
        ),
        curves=report(
            paths.report_file("figures/learning_curves.png"),
            caption="captions/learning_curves.rst",
            category="Training",
            subcategory="{run}",
        ),
        per_class=report(
            paths.report_file("figures/per_class.png"),
            caption="captions/per_class.rst",
            category="Evaluation",
            subcategory="{run}",
        ),
    log:
        paths.log("report", "{run}"),
    benchmark:
        paths.benchmark("report", "{run}")
    conda:
        "../envs/segpipe.yaml"
    threads: res("report", "threads", of_run=True)
    resources:
        mem_mb=res("report", "mem_mb", of_run=True),
        runtime=res("report", "runtime", of_run=True),
    params:
        report=run_option("report"),
        tta=run_option("predict", "tta"),
        # The infer.images gallery's overlays are drawn at it where predict.overlays is none.
        overlay_alpha=run_option("predict", "overlay_alpha"),
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        # Shown in the run summary: the options its results depend on (segpipe.params).
        config=lambda wildcards: run_summary(RUNS[wildcards.run].config),
        benchmarks=lambda wildcards: LAYOUT.run_benchmarks(wildcards.run),
        # What the test sections show: "" for the run's only model, "ensemble" or "fold0".
        model=lambda wildcards: RUNS[wildcards.run]
        .primary.name.removeprefix(wildcards.run)
        .strip("/"),
    script:
        "../scripts/report.py"
