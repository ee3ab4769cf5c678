"""Rule infer_selected: see segpipe.inference.predict_selected.predict_selected."""

from segpipe.inference.predict_selected import predict_selected
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
predict_selected(
    params.folder,
    snakemake.output.predictions,
    params.runs,
    params.models,
    untracked=params.untracked,
    classes=params.classes,
    threads=snakemake.threads,
)
