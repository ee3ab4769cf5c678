"""Rule search_winner: see segpipe.evaluation.rungs.publish_winner."""

from segpipe.evaluation.rungs import publish_winner
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
keys = ("best", "last", "history", "model")
inp, out = snakemake.input, snakemake.output
publish_winner([inp[key] for key in keys], [out[key] for key in keys])
