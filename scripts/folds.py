"""Rule folds: see segpipe.data.split.write_fold."""

from segpipe.data.split import write_fold
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
out, params = snakemake.output, snakemake.params
write_fold(
    snakemake.input.index,
    list(snakemake.input.pool),
    params.fold,
    {"train": out.train, "val": out.val},
    out.classes,
    class_names=params.classes,
    folds=params.folds,
    seed=params.seed,
    stratify=params.stratify,
)
