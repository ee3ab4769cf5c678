"""Rule preprocess: see segpipe.preprocess.preprocess_split."""

from segpipe.logs import setup_logging
from segpipe.preprocess import preprocess_split

setup_logging(snakemake.log[0])
preprocess_split(
    snakemake.input.manifest,
    snakemake.output.array,
    image_size=snakemake.params.image_size,
    scale=snakemake.params.scale,
    ignore_index=snakemake.params.ignore_index,
    threads=snakemake.threads,
)
