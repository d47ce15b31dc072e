#!/usr/bin/env bash
# One-shot GPU check for a lent CUDA machine (torch preinstalled, no network); every step has
# a timeout and the sum stays under 17 minutes worst case, about 7 typical, so it can be rerun:
#   CUDA-marked tests (layers 2-D/1-D/3-D, data, compiled and CUDA-graph training),
#   the layer benchmarks, the models benchmark eager and with CUDA graphs, the compile
#   benchmark, the Table 2 budget eager vs CUDA graphs, and a short training run.
# Everything it prints lands in $OUT/gpu_check.log; tables also as $OUT/*.md.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps -e . >/dev/null 2>&1 || export PYTHONPATH="$PWD/src"
dwstft() { python3 -m dwstft.cli "$@"; }
step() { echo; echo "==== $* ($(date +%T))"; }
{
  step machine
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
  step cuda tests
  timeout 180 python3 -m pytest -q -m cuda -p no:cacheprovider tests
  step bench layer 2-D and 3-D
  timeout 60 dwstft bench layer --device cuda --rounds 9 --output "$OUT/layer2d.md"
  timeout 45 dwstft bench layer --dims 3 --device cuda --rounds 9 --output "$OUT/layer3d.md"
  step bench models, eager
  timeout 90 dwstft bench models --device cuda --rounds 5 --json "$OUT/bench_models_cuda.json" \
    --output "$OUT/models_eager.md"
  step bench models, CUDA graphs
  timeout 150 dwstft bench models --device cuda --rounds 5 --compile-mode reduce-overhead \
    --models stftnet_b8_f128 mobilenetv2 --output "$OUT/models_graphs.md"
  step bench compile, CUDA graphs: cold/warm compile seconds and step speed-up
  timeout 120 dwstft bench compile stftnet_b8_f128 mobilenetv2 --device cuda \
    --mode reduce-overhead --output "$OUT/compile_cuda.md"
  step Table 2 budget: every row eager, two rows eager vs CUDA graphs
  timeout 120 dwstft bench budget --device cuda --rounds 5 --output "$OUT/budget_eager.md"
  timeout 150 dwstft bench budget --device cuda --rounds 5 --compile-mode reduce-overhead \
    --models stftnet_b8_f128 mobilenetv2 --output "$OUT/budget_graphs.md"
  step train digits with CUDA graphs
  timeout 60 dwstft train --model stftnet_b8_f128 --dataset digits --epochs 15 --recipe fast \
    --device cuda --cuda-graphs --output "$OUT/run_graphs"
  step done
} 2>&1 | tee "$OUT/gpu_check.log"
