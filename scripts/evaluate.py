"""Rule evaluate: see segpipe.evaluation.evaluate.evaluate_split."""

from segpipe.evaluation.evaluate import evaluate_split
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
out = snakemake.output
evaluate_split(
    snakemake.input.manifest,
    snakemake.input.predictions,
    metrics_json=out.metrics,
    per_class_csv=out.per_class,
    confusion_csv=out.confusion,
    confusion_normalized_csv=out.confusion_normalized,
    confusion_counts_csv=out.confusion_counts,
    per_image_csv=out.per_image,
    split=snakemake.wildcards.split,
    **snakemake.params,
)
