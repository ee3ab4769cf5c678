"""Rule infer: see segpipe.inference.folder.predict_folder."""

from segpipe.inference.folder import predict_folder
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
predict_folder(
    list(snakemake.input.checkpoints),
    params.folder,
    snakemake.output.predictions,
    classes=params.classes,
    threads=snakemake.threads,
    **params.predict,
    **params.untracked,
)
