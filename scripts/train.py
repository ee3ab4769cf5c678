"""Rule train: see segpipe.training.train.train_model."""

from segpipe.data.preprocess import select_rows
from segpipe.logs import setup_logging
from segpipe.training.train import train_model

setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
arrays, manifests = list(inp.arrays), list(inp.array_manifests)
train_model(
    select_rows(inp.train, arrays, manifests),
    select_rows(inp.val, arrays, manifests),
    best_path=out.best,
    last_path=out.last,
    history_path=out.history,
    model_path=out.model,
    resume_dir=snakemake.params.resume_dir,
    classes=snakemake.params.classes,
    ignore_index=snakemake.params.ignore_index,
    threads=snakemake.threads,
    **snakemake.params.train,
    **snakemake.params.untracked,
    **snakemake.params.pretrained,
)
