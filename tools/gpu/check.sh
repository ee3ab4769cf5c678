#!/usr/bin/env bash
# The GPU checks of issue #6 in one call, on a lent GPU machine (the `device` tool):
#   1. the CUDA tests (pytest -m cuda: GPU augmentation = CPU, pinned channels_last batches,
#      training under bf16/fp16 autocast and torch.compile),
#   2. tools/bench/bench_train.py at 256², UNet-ResNet34, batch 64, fast settings with
#      torch.compile vs fp32 eager, on synthetic Oxford-layout data.
# It writes $OUT/<name>.json and $OUT/check.log (OUT defaults to tools/bench/results).
# Prepare with tools/gpu/fetch-wheels.sh here, then run it there with `.whl` carried:
#   bash tools/gpu/check.sh h200
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:-gpu}
out=${OUT:-tools/bench/results}
mkdir -p "$out"
exec > >(tee "$out/check.log") 2>&1

if compgen -G ".whl/*.whl" >/dev/null; then
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
		--target /tmp/site .whl/*.whl
	export PYTHONPATH=/tmp/site
fi
# The package from source: the image's torch stays, its pins do not apply there.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export MPLBACKEND=Agg

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 -c 'import torch, segmentation_models_pytorch as smp, kornia
print("torch", torch.__version__, "cuda", torch.version.cuda, "smp", smp.__version__, "kornia", kornia.__version__)
assert torch.cuda.is_available(), "torch sees no CUDA device"'

status=0
timeout 180 python3 -m pytest -q -p no:cacheprovider -m cuda \
	tests/training/test_augment.py tests/data/test_arrays.py tests/training/test_train.py || status=$?

timeout 360 python3 tools/bench/bench_train.py --image-size 256 --batch-size 64 --images 512 \
	--steps 20 --loader-steps 40 --compile --skip-memory --out "$out/$name.json" || status=$?
exit $status
