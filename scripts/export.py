"""Rule export: see segpipe.inference.onnx.export_onnx."""

import torch

from segpipe.inference.onnx import export_onnx
from segpipe.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
export_onnx(snakemake.input.checkpoint, snakemake.output.onnx)
