"""Rule synthesize: see segpipe.synthetic.synthesize_archives."""

from pathlib import Path

from segpipe.logs import setup_logging
from segpipe.synthetic import synthesize_archives

setup_logging(snakemake.log[0])
synthesize_archives(Path(snakemake.output.resources).parent, **snakemake.params.synthetic)
