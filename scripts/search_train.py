"""Rule search_train: see segpipe.training.search_train.train_rung."""

from segpipe.data.preprocess import select_rows
from segpipe.logs import setup_logging
from segpipe.training.search_train import train_rung

setup_logging(snakemake.log[0])
inp, out, params = snakemake.input, snakemake.output, snakemake.params
arrays, manifests = list(inp.arrays), list(inp.array_manifests)
train_rung(
    list(inp.previous),
    params.resume_dir,
    train_data=select_rows(inp.train, arrays, manifests),
    val_data=select_rows(inp.val, arrays, manifests),
    best_path=out.best,
    last_path=out.last,
    history_path=out.history,
    model_path=out.model,
    classes=params.classes,
    ignore_index=params.ignore_index,
    threads=snakemake.threads,
    **params.train,
    **params.untracked,
    **params.pretrained,
)
