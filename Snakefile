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
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/dvc.smk"


rule all:
    input:
        "results/report/report.html",
        expand("results/evaluate/{split}/metrics.json", split=EVAL_SPLITS),
