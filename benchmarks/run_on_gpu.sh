#!/usr/bin/env bash
# The GPU checks, in one command on a lent GPU machine (no network there): peers' wheels are
# carried in .whl/ (see docs/benchmarks.md), the machine's own python3 holds torch.
#   bash benchmarks/run_on_gpu.sh [OUT_DIR]
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu-out}}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
python3 -m pytest tests/test_gpu.py tests/test_fast_model.py -q -p no:cacheprovider 2>&1 | tee "$out/pytest_gpu.txt" | tail -5
python3 benchmarks/batch_sweep.py --sizes 8 16 32 64 2>&1 | grep -v Warn | tee "$out/batch_sweep_gpu.txt"
python3 benchmarks/attribution_speed.py --repeats 5 2>&1 | grep -v -i warn | tee "$out/attribution_gpu.txt"
python3 benchmarks/gradcam_speed.py --repeats 5 2>&1 | grep -v -i warn | tee "$out/gradcam_gpu.txt"
# Feature visualization against Lucent (carry .peers/ too: Lucent + kornia 0.4.1, see docs).
PYTHONPATH=$PYTHONPATH:$PWD/.peers/lucent python3 benchmarks/feature_vis_speed.py --channels 128 --steps 32 \
  2>&1 | grep -v -i warn | tee "$out/feature_vis_gpu.txt"
