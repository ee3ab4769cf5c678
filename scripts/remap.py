"""Rule remap: see segpipe.remap.remap_dataset."""

from pathlib import Path

from segpipe.io import remove_stale_temporaries
from segpipe.logs import setup_logging
from segpipe.remap import remap_dataset

setup_logging(snakemake.log[0])
# results/remap holds this rule's outputs alone: clear what a killed earlier run left there.
remove_stale_temporaries(Path(snakemake.output.masks).parent)
remap_dataset(
    snakemake.params.root,
    snakemake.output.masks,
    snakemake.output.index,
    snakemake.output.quarantine,
    threads=snakemake.threads,
    **snakemake.params.options,
)
