"""Rule remap: see segpipe.data.remap.remap_dataset."""

from segpipe.data.remap import remap_dataset
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
remap_dataset(
    snakemake.params.root,
    snakemake.output.masks,
    snakemake.output.index,
    snakemake.output.quarantine,
    threads=snakemake.threads,
    **snakemake.params.options,
)
