#!/usr/bin/env bash
# One-shot GPU check (a lent CUDA machine with torch preinstalled, no network):
# CUDA-marked tests, the layer / model / pipeline benchmarks on the GPU, and a short
# training run. Everything it prints lands in $OUT/gpu_check.log.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1
dwstft() { python3 -m dwstft.cli "$@"; }
step() { echo; echo "==== $* ($(date +%T))"; }
{
  step machine
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())"
  step cuda tests
  python3 -m pytest -q -m cuda -p no:cacheprovider \
    tests/test_layers.py tests/test_data_augment.py tests/test_data_loader.py
  step bench layer
  dwstft bench layer --device cuda --rounds 15
  step bench models
  dwstft bench models --device cuda --rounds 7 --json "$OUT/bench_models_cuda.json"
  step bench pipeline
  dwstft bench pipeline --device cuda -b 128 --images 20000 --batches 60 --rounds 3 --workers 0 4
  step train quickstart on cuda, amp
  dwstft train --model stftnet_b8_f128 --dataset digits --epochs 15 --recipe fast \
    --device cuda --amp --output /tmp/gpu_quick
  step done
} 2>&1 | tee "$OUT/gpu_check.log"
