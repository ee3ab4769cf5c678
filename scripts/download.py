"""Rule download: see segpipe.data.download.download_dataset."""

import json
from pathlib import Path

from segpipe.data.download import download_dataset
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
resources = snakemake.params.resources or json.loads(Path(snakemake.input.resources).read_text())
download_dataset(
    resources,
    snakemake.output.dataset,
    cache_dir=snakemake.params.cache_dir,
    **snakemake.params.untracked,
)
