"""Rule evaluate: see segpipe.evaluation.evaluate.evaluate_split."""

from segpipe.data.predictions import split_dir
from segpipe.evaluation.evaluate import evaluate_split
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
out, params, split = snakemake.output, snakemake.params, snakemake.wildcards.split
evaluate_split(
    snakemake.input.manifest,
    split_dir(snakemake.input.predictions, split, tta=params.tta),
    metrics_json=out.metrics,
    per_class_csv=out.per_class,
    confusion_csv=out.confusion,
    confusion_normalized_csv=out.confusion_normalized,
    confusion_counts_csv=out.confusion_counts,
    per_image_csv=out.per_image,
    split=split,
    classes=params.classes,
    ignore_index=params.ignore_index,
    foreground_classes=params.foreground_classes,
)
