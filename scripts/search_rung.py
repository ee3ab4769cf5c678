"""Rule search_rung: see segpipe.evaluation.rungs.write_rung."""

from segpipe.evaluation.rungs import write_rung
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
write_rung(
    snakemake.output.rung,
    bracket=int(snakemake.wildcards.bracket),
    rung=int(snakemake.wildcards.rung),
    epochs=params.epochs,
    candidates=list(params.candidates),
    histories=list(snakemake.input.histories),
    eta=params.eta,
    last=params.last,
)
