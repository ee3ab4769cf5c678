"""Rule split: see segpipe.split.write_split."""

from segpipe.logs import setup_logging
from segpipe.split import write_split

setup_logging(snakemake.log[0])
write_split(snakemake.input.index, dict(snakemake.output.items()), **snakemake.params.split)
