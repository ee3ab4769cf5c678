"""Rule split: see segpipe.data.split.write_split."""

from segpipe.data.split import write_split
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
out = snakemake.output
write_split(
    snakemake.input.index,
    {"train": out.train, "val": out.val, "test": out.test},
    out.classes,
    class_names=snakemake.params.classes,
    **snakemake.params.split,
)
