localrules:
    report,


rule report:
    """One self-contained HTML report; key figures also go into `snakemake --report`."""
    input:
        metrics="results/evaluate/test/metrics.json",
        val_metrics="results/evaluate/val/metrics.json",
        per_class="results/evaluate/test/per_class.csv",
        confusion="results/evaluate/test/confusion.csv",
        per_image="results/evaluate/test/per_image.csv",
        history="results/train/history.csv",
        manifest="results/split/test.csv",
        predictions="results/predict/test",
        quarantine="results/remap/quarantine.csv",
        classes="results/split/classes.csv",
    output:
        html="results/report/report.html",
        confusion=report(
            "results/report/figures/confusion.png",
            caption="captions/confusion.rst",
            category="Evaluation",
        ),
        curves=report(
            "results/report/figures/learning_curves.png",
            caption="captions/learning_curves.rst",
            category="Training",
        ),
        per_class=report(
            "results/report/figures/per_class.png",
            caption="captions/per_class.rst",
            category="Evaluation",
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../envs/segpipe.yaml"
    threads: res("report", "threads")
    resources:
        mem_mb=res("report", "mem_mb"),
        runtime=res("report", "runtime"),
    params:
        report=config["report"],
        classes=verbatim(config["classes"]),
        ignore_index=config["ignore_index"],
        # Shown in the run summary. Resources only change where jobs run, not the results.
        config={k: v for k, v in config.items() if k != "resources"},
        benchmarks={
            "download": "benchmarks/download/download.tsv",
            "remap": "benchmarks/remap/remap.tsv",
            "split": "benchmarks/split/split.tsv",
            "train": "benchmarks/train/train.tsv",
            "predict (test)": "benchmarks/predict/test.tsv",
            "evaluate (test)": "benchmarks/evaluate/test.tsv",
        },
    script:
        "../scripts/report.py"
