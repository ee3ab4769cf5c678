"""segpipe: semantic-segmentation pipeline logic (download, remap, split, train, predict, evaluate, report).

Every public function takes paths, arrays and keyword arguments; none reads the Snakemake object or a
config file itself, so tests and other tools can call them directly.
"""

__version__ = "0.1.0"
