#!/usr/bin/env bash
# GPU check: the whole pipeline on CUDA (Lightning training, bf16 bench at batch 32).
# Usage on a CUDA machine, from the repository root:  OUT=results bash benchmarks/gpu_smoke.sh
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-}:src PYTHONUNBUFFERED=1
python3 -m velora.cli demo --quick --output /tmp/velora-quick 2>&1 | grep -v "it/s" | tail -12 | tee "$OUT/gpu_quick_demo.txt"
cp /tmp/velora-quick/report/metrics.json "$OUT/gpu_quick_demo_metrics.json" 2>/dev/null
python3 -m velora.cli bench --config pokerevent_vitb16 model.weights=none data.num_frames=8 \
  --device cuda --batch-size 32 --steps 3 --precision bf16 --json "$OUT/bench_vitb16_t8_b32_bf16.json" 2>&1 | tee "$OUT/bench_b32.txt"
