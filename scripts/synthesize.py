"""Rule synthesize: see segpipe.data.synthetic.synthesize_archives."""

from pathlib import Path

from segpipe.data.synthetic import synthesize_archives
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
synthesize_archives(Path(snakemake.output.resources).parent, **snakemake.params.synthetic)
