"""Rule search_report: see segpipe.reporting.search_report.build_search_report."""

from segpipe.logs import setup_logging
from segpipe.reporting.search_report import build_search_report

setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
build_search_report(
    list(inp.rungs),
    dict(zip(params.runs, inp.histories, strict=True)),
    snakemake.output.html,
    snakemake.output.figures,
    selection_csv=inp.selection,
    max_epochs=params.max_epochs,
    eta=params.eta,
    title=params.title,
    winner_report=params.winner_report,
)
