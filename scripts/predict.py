"""Rule predict: see segpipe.inference.predict_splits.predict_model."""

from segpipe.inference.predict_splits import PredictOptions, predict_model
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
predict_model(
    list(inp.checkpoints),
    dict(zip(params.splits, inp.manifests, strict=True)),
    list(inp.arrays),
    list(inp.array_manifests),
    snakemake.output.predictions,
    PredictOptions(threads=snakemake.threads, **params.predict, **params.untracked),
)
