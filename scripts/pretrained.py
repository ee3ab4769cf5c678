"""Rule pretrained: see segpipe.models.pretrained.fetch_weights."""

from segpipe.logs import setup_logging
from segpipe.models.pretrained import fetch_weights

setup_logging(snakemake.log[0])
fetch_weights(snakemake.wildcards.encoder, snakemake.wildcards.weights, snakemake.params.cache)
