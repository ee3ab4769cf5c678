"""After a successful run, record the artifacts' hashes in dvc.lock (see segpipe.workflow.dvc).

Skipped, with a log line, outside a DVC repository, for --touch runs, under `dvc repro` and when
the run's config differs from config/config.yaml (the params dvc.lock pairs the outputs with).
"""

from snakemake.logging import logger as _logger

from segpipe.workflow.dvc import record_after_run


onsuccess:
    record_after_run(config, touch=workflow.touch, log=_logger)
