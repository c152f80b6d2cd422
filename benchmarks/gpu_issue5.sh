#!/usr/bin/env bash
# Every GPU check of issue #5 in one go, within ~9 minutes of one H100/H200 (each part has its own
# time limit and the whole script a deadline, so a slow part cannot starve the ones after it).
# ViT-B/16, T = 8, 224 px, random weights (speed does not depend on their values).
#
#   1. velora bench, batch 32, bf16: train / inference clips/s, one-clip latency, peak memory, MFU,
#      frozen weight bytes and the SDPA kernel, against the original-style execution (fp32, three
#      backbone copies, one image per call; at batch 4: its clips/s hardly depends on the batch).
#   2. PokerEvent-sized epoch: packed dataset of generated clips, real DataModule + training step;
#      EPOCH_CLIPS records (default 4,096 = a quarter of 16,216), the full epoch extrapolated from
#      the steady rate and labelled as extrapolated in epoch.json.
#   3. activation checkpointing at batch 32 (speed / memory trade-off) and the largest batch with it.
#   4. torch.compile of the low-level blocks, batch 32 (train, inference).
#   5. the largest batch without checkpointing.
#   (between 2 and 3: tests/test_gpu.py, the CUDA-only tests, about a minute; then
#   benchmarks/profile_step.py: a training step's device time by kind of work.)
#
# Usage on a CUDA machine, from the repository root:  OUT=/some/dir bash benchmarks/gpu_issue5.sh
# CPU dry run of the same commands (tiny settings; --max-batch is CUDA-only and left out):
#   DEVICE=cpu CONFIG=demo BATCH=4 ORIG_BATCH=2 STEPS=2 EPOCH_CLIPS=48 EPOCH_BATCH=16 WORKERS=2 \
#   EPOCH_CONFIG=demo OUT=/tmp/gpu_issue5_dry bash benchmarks/gpu_issue5.sh
set -uo pipefail
OUT=${OUT:-benchmarks/results/issue5}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-pokerevent_vitb16}
EPOCH_CONFIG=${EPOCH_CONFIG:-pokerevent_vitb16}
BATCH=${BATCH:-32}
ORIG_BATCH=${ORIG_BATCH:-4}
STEPS=${STEPS:-5}
EPOCH_CLIPS=${EPOCH_CLIPS:-4096}
EPOCH_BATCH=${EPOCH_BATCH:-32}
WORKERS=${WORKERS:-8}
DEADLINE=${DEADLINE:-560}  # seconds for the whole script
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
START=$(date +%s)
COMMON=(--config "$CONFIG" model.weights=none data.num_frames=8 --device "$DEVICE" --precision bf16)
if [ "$DEVICE" = cuda ]; then MAXB=--max-batch; else MAXB=; fi

# part NAME LIMIT_S COMMAND...: run with min(LIMIT_S, time left) and log to $OUT/NAME.txt
part() {
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - ($(date +%s) - START)))
  if [ "$left" -lt 30 ]; then echo "== $name: skipped, ${left}s left of the ${DEADLINE}s deadline" | tee "$OUT/$name.txt"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s): $*" | tee "$OUT/$name.txt"
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | grep -v "it/s\]" | tee -a "$OUT/$name.txt"
  echo "== $name: exit ${PIPESTATUS[0]} after $(($(date +%s) - t0))s" | tee -a "$OUT/$name.txt"
}

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, timm, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'timm', timm.__version__, 'lightning', lightning.__version__)"
  nproc
} 2>&1 | tee "$OUT/env.txt"

part bench_b32 170 $PY -m velora.cli bench "${COMMON[@]}" --batch-size "$BATCH" --steps "$STEPS" \
  --original-batch-size "$ORIG_BATCH" --json "$OUT/bench_b32_bf16.json"

part epoch 150 $PY benchmarks/epoch_bench.py --config "$EPOCH_CONFIG" --device "$DEVICE" --clips "$EPOCH_CLIPS" \
  --distinct 256 --batch-size "$EPOCH_BATCH" --workers "$WORKERS" --json "$OUT/epoch.json"

# The CUDA-only tests (tests/test_gpu.py): bench paths, the device-side NaN skip, no syncs per step.
if [ "$DEVICE" = cuda ]; then
  part gpu_tests 90 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py
fi

# Where a step's device time goes (matmul / attention / dropout / ...), and the device's idle share.
part profile 60 $PY benchmarks/profile_step.py --config "$CONFIG" --device "$DEVICE" --batch-size "$BATCH" \
  --steps 3 --json "$OUT/profile_train_b32_bf16.json"

part checkpointing 170 $PY -m velora.cli bench "${COMMON[@]}" --batch-size "$BATCH" --steps 3 --no-original \
  --modes train --checkpointing $MAXB --json "$OUT/bench_b32_bf16_checkpointing.json"

part compile 170 $PY -m velora.cli bench "${COMMON[@]}" --batch-size "$BATCH" --steps "$STEPS" --no-original \
  --modes train,infer --compile --json "$OUT/bench_b32_bf16_compile.json"

part max_batch 110 $PY -m velora.cli bench "${COMMON[@]}" --batch-size "$BATCH" --steps 3 --no-original \
  --modes train $MAXB --json "$OUT/bench_bf16_max_batch.json"

echo "total $(($(date +%s) - START))s" | tee -a "$OUT/env.txt"
