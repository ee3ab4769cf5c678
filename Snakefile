from snakemake.utils import min_version

from segpipe.workflow.config import config_file_problem

min_version("9.0")


# Snakemake's own message for a broken config file names neither the file nor the line, and it
# keeps the last of a key given twice silently; the --configfile files are read by then.
for _path in ["config/config.yaml", *workflow.config_settings.configfiles]:
    if _config_problem := config_file_problem(_path):
        raise ValueError(_config_problem)


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/remap.smk"
include: "rules/split.smk"
include: "rules/preprocess.smk"
include: "rules/pretrained.smk"
include: "rules/train.smk"
include: "rules/predict.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/crossval.smk"
include: "rules/report.smk"
include: "rules/compare.smk"
include: "rules/infer.smk"
include: "rules/search.smk"
include: "rules/dvc.smk"


rule all:
    input:
        # Without a search, every run; with one, the search and its winner (search_targets).
        expand(rules.report.output.html, run=[] if SEARCH else RUNS),
        [] if SEARCH else LAYOUT.evaluations(),
        expand(rules.crossval.output.metrics, run=[r for r in RUNS if RUNS[r].folds]),
        rules.compare.output.html if COMPARE else [],
        [LAYOUT.infer_dir()] if INFER_IMAGES and not SEARCH else [],
        # The search report from the start: asked for only once its checkpoints are decided,
        # it would be left stale by a run that redecides them without a new winner.
        paths.SEARCH_REPORT if SEARCH else [],
        search_targets,
