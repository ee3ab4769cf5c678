"""Rule report: see segpipe.reporting.run_report.build_report."""

from pathlib import Path

from segpipe.logs import setup_logging
from segpipe.reporting.run_report import build_report, inputs_of_rule

setup_logging(snakemake.log[0])
params = snakemake.params
inputs = inputs_of_rule(
    dict(snakemake.input.items()),
    params.report,
    model=params.model,
    class_names=params.classes,
    ignore_index=params.ignore_index,
    config=params.config,
    benchmarks=params.benchmarks,
    repo_dir=snakemake.scriptdir + "/..",
    tta=params.tta,
    overlay_alpha=params.overlay_alpha,
)
build_report(snakemake.output.html, Path(snakemake.output.confusion).parent, inputs)
