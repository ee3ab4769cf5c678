"""Rule predict: see segpipe.predict.predict_split."""

from segpipe.logs import setup_logging
from segpipe.predict import predict_split
from segpipe.preprocess import select_rows

setup_logging(snakemake.log[0])
inp = snakemake.input
predict_split(
    list(inp.checkpoints),
    inp.manifest,
    select_rows(inp.manifest, list(inp.arrays), list(inp.array_manifests)),
    snakemake.output.predictions,
    threads=snakemake.threads,
    device=snakemake.params.device,
    amp=snakemake.params.amp,
    **snakemake.params.predict,
    **snakemake.params.runtime,
)
