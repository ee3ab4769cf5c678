localrules:
    report,


rule report:
    """One run's self-contained HTML report; key figures also go into `snakemake --report`."""
    input:
        metrics="results/runs/{run}/evaluate/test/metrics.json",
        val_metrics="results/runs/{run}/evaluate/val/metrics.json",
        per_class="results/runs/{run}/evaluate/test/per_class.csv",
        confusion="results/runs/{run}/evaluate/test/confusion.csv",
        per_image="results/runs/{run}/evaluate/test/per_image.csv",
        history="results/runs/{run}/train/history.csv",
        manifest=lambda wildcards: split_manifest(wildcards.run, "test"),
        predictions="results/runs/{run}/predict/test",
        quarantine="results/remap/quarantine.csv",
        classes=lambda wildcards: split_manifest(wildcards.run, "classes"),
    output:
        html="results/runs/{run}/report/report.html",
        confusion=report(
            "results/runs/{run}/report/figures/confusion.png",
            caption="captions/confusion.rst",
            category="Evaluation",
            subcategory="{run}",
        ),
        curves=report(
            "results/runs/{run}/report/figures/learning_curves.png",
            caption="captions/learning_curves.rst",
            category="Training",
            subcategory="{run}",
        ),
        per_class=report(
            "results/runs/{run}/report/figures/per_class.png",
            caption="captions/per_class.rst",
            category="Evaluation",
            subcategory="{run}",
        ),
    log:
        "logs/report/{run}.log",
    benchmark:
        "benchmarks/report/{run}.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: run_res("report", "threads")
    resources:
        mem_mb=run_res("report", "mem_mb"),
        runtime=run_res("report", "runtime"),
    params:
        report=run_option("report"),
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        # Shown in the run summary. Resources only change where jobs run, not the results.
        config=lambda wildcards: {
            k: v for k, v in RUNS[wildcards.run].config.items() if k != "resources"
        },
        benchmarks=lambda wildcards: run_benchmarks(wildcards.run),
    script:
        "../scripts/report.py"
