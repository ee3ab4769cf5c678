"""Rule preprocess: see segpipe.data.preprocess.preprocess_split."""

from segpipe.data.preprocess import preprocess_split
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
preprocess_split(
    snakemake.input.manifest,
    snakemake.output.array,
    image_size=snakemake.params.image_size,
    scale=snakemake.params.scale,
    ignore_index=snakemake.params.ignore_index,
    threads=snakemake.threads,
)
