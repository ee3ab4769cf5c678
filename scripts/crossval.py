"""Rule crossval: see segpipe.evaluation.crossval.write_crossval."""

from segpipe.evaluation.crossval import write_crossval
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
write_crossval(
    out.metrics,
    out.folds,
    out.per_image,
    val_metrics=list(inp.val_metrics),
    test_metrics=list(inp.test_metrics),
    val_per_image=list(inp.val_per_image),
    class_names=snakemake.params.classes,
    ensemble_test_metrics=inp.get("ensemble_test_metrics"),
)
