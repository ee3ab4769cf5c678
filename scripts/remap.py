"""Rule remap: see segpipe.remap.remap_dataset."""

from segpipe.logs import setup_logging
from segpipe.remap import remap_dataset

setup_logging(snakemake.log[0])
remap_dataset(
    snakemake.params.root,
    snakemake.output.masks,
    snakemake.output.index,
    snakemake.output.quarantine,
    threads=snakemake.threads,
    **snakemake.params.options,
)
