#!/usr/bin/env bash
# One prepared GPU run for the default model: train every stage with the gpu preset, evaluate the result,
# and time it. Writes everything under ${OUT:-bench/results/gpu-shapes}. Expected: about 10 minutes on one
# H100/H200 for training (the target), a few more for the evaluation.
#   OUT=/some/dir bash bench/gpu_shapes.sh
set -euo pipefail
OUT=${OUT:-bench/results/gpu-shapes}
PY=${PY:-python}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpu.txt" || true
start=$(date +%s)
$PY -m latentlib.train_shapes all --out "$OUT/runs" --decoder --preset gpu --device cuda 2>&1 | tr '\r' '\n' | grep -v "it/s]" > "$OUT/train.log"
end=$(date +%s)
echo "{\"train_all_gpu_seconds\": $((end - start))}" > "$OUT/timing.json"
$PY -m latentlib.evaluate_shapes --model "$OUT/runs/model" --runs "$OUT/runs" --card 2>&1 | tr '\r' '\n' \
  | grep -v "it/s]" > "$OUT/evaluate.log"
cat "$OUT/timing.json" "$OUT/evaluate.log" | tail -20
