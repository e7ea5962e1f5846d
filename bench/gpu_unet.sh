#!/usr/bin/env bash
# One prepared GPU run that trains the default model's UNet stage for a fixed time budget: a short
# calibration run measures seconds per step on this GPU, then the real run gets as many steps as fit in
# BUDGET_S (capped by the preset), with its own cosine schedule. With INIT it continues a finished UNet
# (train_shapes' --init: a new schedule in a new run folder). Writes the run folder (unet/, loss.csv,
# metrics.json with the exact settings) under ${OUT:-bench/results/gpu-unet}; the pre-encoded latents and
# the calibration run are deleted at the end. The device tool brings back at most 8 files from $OUT, so the
# run leaves exactly these: run/unet/{config.json, diffusion_pytorch_model.safetensors}, run/metrics.json,
# run/loss.csv, run/loss.png, plan.txt (GPU, calibration, step count), run.log, timing.json.
# AMP=bf16 runs the UNet's forward pass under bfloat16 autocast (train_shapes --amp; default off, as the
# H200 calibration of 0.107 s/step at batch 512 was taken; try AMP=bf16 on the next lent GPU).
#   VAE=runs/vae TEXT=runs/text INIT=runs/unet OUT=/some/dir BUDGET_S=360 bash bench/gpu_unet.sh
# On the project's lent GPU machines diffusers is not installed: carry its wheel and set WHEELS=.whl.
set -euo pipefail
OUT=${OUT:-bench/results/gpu-unet}
PY=${PY:-python3}
PRESET=${PRESET:-gpu}
DEVICE=${DEVICE:-cuda}
SCENES=${SCENES:-120000}
BUDGET_S=${BUDGET_S:-360}
CALIB_STEPS=${CALIB_STEPS:-100}
MAX_STEPS=${MAX_STEPS:-12000}
AMP=${AMP:-off}
: "${VAE:?set VAE to a finished vae stage folder}" "${TEXT:?set TEXT to a finished text stage folder}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:-}:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/plan.txt" 2>/dev/null || true
common=(unet --preset "$PRESET" --device "$DEVICE" --vae "$VAE" --text "$TEXT" --scenes "$SCENES" --amp "$AMP")
if [ -n "${INIT:-}" ]; then common+=(--init "$INIT"); fi
quiet() { tr '\r' '\n' | grep -v "it/s]" || true; }

$PY -m latentlib.train_shapes "${common[@]}" --out "$OUT/calibration" --steps "$CALIB_STEPS" 2>&1 | quiet \
  > "$OUT/run.log"
steps=$($PY - "$OUT/calibration/metrics.json" "$CALIB_STEPS" "$BUDGET_S" "$MAX_STEPS" <<'EOF'
import json, sys
seconds = json.load(open(sys.argv[1]))["provenance"]["seconds"]
calib, budget, cap = int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
per_step = seconds / calib
print(max(calib, min(cap, int(budget / per_step) // 100 * 100)))
EOF
)
echo "calibration: $($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["provenance"]["seconds"])' "$OUT/calibration/metrics.json") s for $CALIB_STEPS steps -> $steps steps in ${BUDGET_S} s" | tee -a "$OUT/plan.txt"
mkdir -p "$OUT/run"
cp "$OUT/calibration/latents.safetensors" "$OUT/run/latents.safetensors"  # same scenes, same VAE: not re-encoded
rm -rf "$OUT/calibration"
start=$(date +%s)
$PY -m latentlib.train_shapes "${common[@]}" --out "$OUT/run" --steps "$steps" 2>&1 | quiet >> "$OUT/run.log"
echo "{\"steps\": $steps, \"wall_seconds\": $(( $(date +%s) - start ))}" > "$OUT/timing.json"
rm -f "$OUT/run/latents.safetensors"
tail -5 "$OUT/run.log"; cat "$OUT/timing.json"
