"""Rule compare: see segpipe.reporting.comparison.build_comparison."""

from pathlib import Path

from segpipe.logs import setup_logging
from segpipe.reporting.comparison import RunResult, build_comparison

setup_logging(snakemake.log[0])
out, params = snakemake.output, snakemake.params
options = params.compare  # compare.* of the config (config/schema.yaml)
build_comparison(
    out.html,
    Path(out.curves).parent,
    out.leaderboard,
    [RunResult.from_mapping(run) for run in params.runs],
    class_names=params.classes,
    ignore_index=params.ignore_index,
    title=options["title"],
    gallery_size=options["gallery_size"],
    seed=options["seed"],
    n_resamples=options["bootstrap_resamples"],
    infer=params.infer,
)
