#!/usr/bin/env bash
# One-shot GPU check for a lent CUDA machine (torch preinstalled, no network). Every step has
# a timeout; about 7 minutes typical, so it can be rerun inside a 15-minute lease. Steps in
# order of what matters most if the lease ends early:
#   1. CUDA tests that need no compilation (layers 2-D/1-D/3-D, data, LPQ, captured step)
#   2. Table 2 budget, every row: eager vs the whole step captured as one CUDA graph, at the
#      recipe's batch sizes and at 64 and 128 (the before/after hours; STFTNet vs MobileNetV2)
#   3. the same for two rows under torch.compile(mode="reduce-overhead") beside capture
#   4. the compiled CUDA-graph training test (follows eager, resumes exactly) and a short
#      `dwstft train --cuda-graphs` run
#   5. the layer benchmark (LAYER_BENCH=0 skips it)
# Everything it prints lands in $OUT/gpu_check.log; tables also as $OUT/*.md.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
  || export PYTHONPATH="$PWD/src"
dwstft() { python3 -m dwstft.cli "$@"; }
step() { echo; echo "==== $* ($(date +%T))"; }
{
  step machine
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
  python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
  step cuda tests without compilation
  timeout 120 python3 -m pytest -q -m cuda -p no:cacheprovider tests \
    --ignore=tests/test_train_compiled.py
  step Table 2 budget: every row eager vs captured
  timeout 150 dwstft bench budget --device cuda --rounds 20 --capture --extra-batches 64 128 \
    --output "$OUT/budget_capture.md"
  step budget: two rows eager vs compiled reduce-overhead vs captured
  timeout 240 dwstft bench budget --device cuda --rounds 20 --capture --extra-batches 64 128 \
    --compile-mode reduce-overhead --models stftnet_b8_f128 mobilenetv2 \
    --output "$OUT/budget_graphs.md"
  step compiled CUDA-graph training test
  timeout 120 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_train_compiled.py
  step train digits with CUDA graphs
  timeout 120 dwstft train --model stftnet_b8_f128 --dataset digits --epochs 3 --recipe fast \
    --device cuda --cuda-graphs --output "$OUT/run_graphs"
  [ "${LAYER_BENCH:-1}" = 1 ] && timeout 45 dwstft bench layer --device cuda --rounds 9 \
    --output "$OUT/layer2d.md"
  step done
} 2>&1 | tee "$OUT/gpu_check.log"
