"""Rule predict: see segpipe.inference.splits.predict_split."""

from segpipe.data.preprocess import select_rows
from segpipe.inference.splits import predict_split
from segpipe.logs import setup_logging

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
