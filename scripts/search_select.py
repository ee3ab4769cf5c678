"""Rule search_select: see segpipe.evaluation.rungs.write_selection."""

from segpipe.evaluation.rungs import write_selection
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
write_selection(snakemake.output.selection, list(snakemake.input.last))
