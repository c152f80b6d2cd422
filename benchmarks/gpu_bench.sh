#!/usr/bin/env bash
# GPU benchmark of issue #2: ViT-B/16, T=8, 224 px, VELoRA (bf16 and fp32) against the
# original-style execution (one image per backbone call, three fp32 backbone copies), same run.
# Usage on a CUDA machine, from the repository root:  OUT=results bash benchmarks/gpu_bench.sh
set -uo pipefail
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$OUT/gpu.txt"
for precision in bf16 fp32; do
  python3 -m velora.cli bench --config pokerevent_vitb16 model.weights=none data.num_frames=8 \
    --device cuda --batch-size 8 --steps 5 --precision $precision \
    --json "$OUT/bench_vitb16_t8_b8_$precision.json" 2>&1 | tee -a "$OUT/bench.txt"
done
