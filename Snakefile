from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/remap.smk"
include: "rules/split.smk"
include: "rules/preprocess.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/crossval.smk"
include: "rules/report.smk"
include: "rules/compare.smk"
include: "rules/infer.smk"
include: "rules/dvc.smk"


rule all:
    input:
        expand("results/runs/{run}/report/report.html", run=RUNS),
        evaluations(),
        [f"results/runs/{run}/crossval/metrics.json" for run in RUNS if RUNS[run].folds],
        "results/compare/report.html" if COMPARE else [],
        infer_targets(),
