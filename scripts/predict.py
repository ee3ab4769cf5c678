"""Rule predict: see segpipe.predict.predict_split."""

from segpipe.logs import setup_logging
from segpipe.predict import predict_split

setup_logging(snakemake.log[0])
predict_split(
    snakemake.input.checkpoint,
    snakemake.input.manifest,
    snakemake.input.array,
    snakemake.output.predictions,
    threads=snakemake.threads,
    device=snakemake.params.device,
    amp=snakemake.params.amp,
    **snakemake.params.predict,
)
