"""Rule train: see segpipe.train.train_model."""

from segpipe.logs import setup_logging
from segpipe.train import train_model

setup_logging(snakemake.log[0])
train_model(
    snakemake.input.train,
    snakemake.input.val,
    best_path=snakemake.output.best,
    last_path=snakemake.output.last,
    history_path=snakemake.output.history,
    model_path=snakemake.output.model,
    resume_dir=snakemake.params.resume_dir,
    classes=snakemake.params.classes,
    ignore_index=snakemake.params.ignore_index,
    threads=snakemake.threads,
    **snakemake.params.train,
)
