#!/usr/bin/env bash
# Run HERE (a machine that reaches PyPI), before tools/gpu/check.sh goes to a lent GPU machine.
#
# The GPU machine's image has Python 3.12 with CUDA PyTorch, torchvision, timm, torchmetrics,
# huggingface_hub, pandas, matplotlib, ... but not these, and it reaches no registry. This
# downloads them as wheels into .whl/ (git-ignored; carried with the call), at the versions
# pinned in requirements.txt, the runtime lock.
set -euo pipefail
cd "$(dirname "$0")/../.."

MISSING=(segmentation_models_pytorch kornia kornia_rs pooch platformdirs)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

specs=()
for name in "${MISSING[@]}"; do
	pin=$(grep -iE "^${name}==" requirements.txt) || {
		echo "fetch-wheels: $name is not pinned in requirements.txt" >&2
		exit 1
	}
	specs+=("$pin")
done
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	--implementation cp "${PLATFORMS[@]/#/--platform=}" -d .whl "${specs[@]}"
ls -l .whl
du -sh .whl
