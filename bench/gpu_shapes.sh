#!/usr/bin/env bash
# One prepared GPU run for the default model (issue 3's "about 10 minutes on one GPU"): every stage with the
# gpu preset (`train_shapes all --decoder --preset gpu --device cuda`: data built ahead in worker processes,
# the vae/decoder/unet networks compiled), timed, inside a time budget. The runs folder RUNS lives in the
# checkout (git-ignored), so on a machine that stays warm a second call with RESUME=1 goes on from the last
# checkpoint. What comes back under ${OUT:-bench/results/gpu-shapes} (at most 8 files, as the device tool
# returns them): gpu.txt, versions.txt, timing.json, train.log.gz and runs.tgz (every stage folder and the
# model, without checkpoints or cached latents; split into runs.tgz.part-* when over 15 MiB).
# Evaluate what came back on the CPU (the speed bars are CPU figures):
#   mkdir runs && tar -xzf runs.tgz -C runs && python -m latentlib.evaluate_shapes --model runs/model --runs runs --card
#   OUT=/some/dir BUDGET_S=520 bash bench/gpu_shapes.sh           # first call
#   OUT=/some/dir BUDGET_S=200 RESUME=1 bash bench/gpu_shapes.sh  # the next, when the first ran out of time
# On the project's lent GPU machines diffusers is not installed: carry its wheel and set WHEELS=.whl.
set -uo pipefail
OUT=${OUT:-bench/results/gpu-shapes}
RUNS=${RUNS:-bench/results/gpu-shapes-runs}
PY=${PY:-python3}
BUDGET_S=${BUDGET_S:-3600}
PRESET=${PRESET:-gpu}
DEVICE=${DEVICE:-cuda}  # PRESET=smoke DEVICE=cpu: a dry run of this script in seconds
mkdir -p "$OUT" "$RUNS"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:-}:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>/dev/null || true
$PY -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__, torch.cuda.get_device_name())" \
  > "$OUT/versions.txt" 2>&1
flags=()
resumed=false
if [ -n "${RESUME:-}" ]; then flags+=(--resume); resumed=true; fi
start=$(date +%s)
timeout "$BUDGET_S" $PY -m latentlib.train_shapes all --out "$RUNS" --decoder --preset "$PRESET" --device "$DEVICE" "${flags[@]}" \
  2>&1 | tr '\r' '\n' | awk '/it\/s|s\/it/ { if (++n % 200) next } { print }' > "$OUT/train.log"
status=${PIPESTATUS[0]}
wall=$(( $(date +%s) - start ))
finished=false
if [ -f "$RUNS/probe/metrics.json" ] && [ -f "$RUNS/model/model_index.json" ]; then finished=true; fi
echo "{\"wall_seconds\": $wall, \"exit_status\": $status, \"finished\": $finished, \"resumed\": $resumed}" \
  > "$OUT/timing.json"
grep -E "s wall|resuming|finished earlier|Error|error" "$OUT/train.log" | tail -20
gzip -f "$OUT/train.log"
tar -czf "$OUT/runs.tgz" --exclude='checkpoint.*' --exclude='latents.safetensors' -C "$RUNS" .
if [ "$(stat -c %s "$OUT/runs.tgz")" -gt $((15 * 1024 * 1024)) ]; then
  split -b 15M -d "$OUT/runs.tgz" "$OUT/runs.tgz.part-" && rm "$OUT/runs.tgz"
fi
cat "$OUT/timing.json"
ls -la "$OUT"
