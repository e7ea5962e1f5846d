#!/usr/bin/env bash
# One prepared GPU run for the default model (issue 3's "about 10 minutes on one GPU"): the stages of
# `train_shapes all --preset gpu --device cuda` (data built ahead in worker processes, the vae/decoder/unet
# networks compiled), each stage timed, inside one time budget. On an H200 (session 28) the model took
# 9.5 min (vae 220 s, text 17, unet 331 over two calls) and the probe 165 s: docs/gpu-preset-run/.
# The runs folder RUNS lives in the checkout (git-ignored), so on a machine that stays warm a second call
# with RESUME=1 goes on: finished stages are kept, the cut one continues from its checkpoint.
# What comes back under ${OUT:-bench/results/gpu-shapes} (at most 8 files, as the device tool returns them):
# gpu.txt, versions.txt, timing.json (wall seconds per stage), train.log.gz and runs.tgz (every stage folder
# and the model, without checkpoints or cached latents; split into runs.tgz.part-* when over 15 MiB).
# Evaluate what came back on the CPU (the speed bars are CPU figures):
#   mkdir runs && tar -xzf runs.tgz -C runs && python -m latentlib.evaluate_shapes --model runs/model --runs runs --card
#   (the run's probe stage judges, where it ran; else the shipped probe)
#   OUT=/some/dir PROBE=0 BUDGET_S=535 bash bench/gpu_shapes.sh           # first call (as in session 28)
#   OUT=/some/dir PROBE=0 BUDGET_S=255 RESUME=1 bash bench/gpu_shapes.sh  # the next, when the first ran out of time
#   (with the probe stage, about 12 minutes in all, give the calls about 165 s more between them)
# Knobs (each an option of `train_shapes all`; empty = the preset's): VAE_STEPS, UNET_STEPS, CAPTION_DROPOUT;
# DECODER=1 adds the decoder stage (as version 9 was made: DECODER=1 VAE_STEPS=6000 UNET_STEPS=12000, about
# 14 min with the probe); PROBE=0 leaves the probe out (165 s on an H200; the shipped probe judges). A call with
# RESUME=1 must give the same knobs as the call it continues (it refuses others). EVAL_N: test scenes of each
# stage's final evaluation (train_shapes --eval-n; default 2000). HUE_SPREAD (0..1, train_shapes --hue-spread):
# train every stage, probe included, on the world with continuous hues (the model records it in world.json).
# On the project's lent GPU machines diffusers is not installed: carry its wheel and set WHEELS=.whl.
set -uo pipefail
OUT=${OUT:-bench/results/gpu-shapes}
RUNS=${RUNS:-bench/results/gpu-shapes-runs}
PY=${PY:-python3}
BUDGET_S=${BUDGET_S:-3600}
PRESET=${PRESET:-gpu}
DEVICE=${DEVICE:-cuda}  # PRESET=smoke DEVICE=cpu: a dry run of this script in seconds
DECODER=${DECODER:-0}
PROBE=${PROBE:-1}
RESUME=${RESUME:-0}
for knob in DECODER PROBE RESUME; do
  case ${!knob} in 0|1) ;; *) echo "$knob must be 0 or 1, got '${!knob}'" >&2; exit 2 ;; esac
done
for knob in VAE_STEPS UNET_STEPS EVAL_N; do
  value=${!knob:-}
  if [ -n "$value" ] && ! [[ $value =~ ^[1-9][0-9]*$ ]]; then echo "$knob must be a whole number > 0, got '$value'" >&2; exit 2; fi
done
if [ -n "${HUE_SPREAD:-}" ] && ! [[ $HUE_SPREAD =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]]; then
  echo "HUE_SPREAD must be a number in [0, 1], got '$HUE_SPREAD'" >&2; exit 2
fi
mkdir -p "$OUT" "$RUNS"
# the knobs a resumed run must keep (a stage continued with other steps or data would be neither run)
knobs="PRESET=$PRESET DECODER=$DECODER VAE_STEPS=${VAE_STEPS:-} UNET_STEPS=${UNET_STEPS:-} CAPTION_DROPOUT=${CAPTION_DROPOUT:-}"
if [ -n "${HUE_SPREAD:-}" ]; then knobs="$knobs HUE_SPREAD=$HUE_SPREAD"; fi
if [ -f "$RUNS/knobs.txt" ]; then
  if [ "$RESUME" != 1 ]; then
    echo "$RUNS holds an earlier run ($(cat "$RUNS/knobs.txt")): RESUME=1 continues it; or set RUNS to a new folder" >&2; exit 2
  elif [ "$(cat "$RUNS/knobs.txt")" != "$knobs" ]; then
    echo "RESUME=1 with other knobs than the run it continues: $knobs, against $(cat "$RUNS/knobs.txt")" >&2; exit 2
  fi
else
  echo "$knobs" > "$RUNS/knobs.txt"
fi
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
if [ "$DECODER" = 1 ]; then flags+=(--decoder); fi
if [ "$PROBE" = 0 ]; then flags+=(--no-probe); fi
if [ "$RESUME" = 1 ]; then flags+=(--resume); fi
if [ -n "${VAE_STEPS:-}" ]; then flags+=(--vae-steps "$VAE_STEPS"); fi
if [ -n "${UNET_STEPS:-}" ]; then flags+=(--unet-steps "$UNET_STEPS"); fi
if [ -n "${CAPTION_DROPOUT:-}" ]; then flags+=(--caption-dropout "$CAPTION_DROPOUT"); fi
if [ -n "${EVAL_N:-}" ]; then flags+=(--eval-n "$EVAL_N"); fi
if [ -n "${HUE_SPREAD:-}" ]; then flags+=(--hue-spread "$HUE_SPREAD"); fi
resumed=false
if [ "$RESUME" = 1 ]; then resumed=true; fi
start=$(date +%s)
echo "== python -m latentlib.train_shapes all --out $RUNS --preset $PRESET --device $DEVICE ${flags[*]}" > "$OUT/train.log"
timeout "$BUDGET_S" $PY -m latentlib.train_shapes all --out "$RUNS" --preset "$PRESET" --device "$DEVICE" ${flags[@]+"${flags[@]}"} \
  2>&1 | tr '\r' '\n' | awk '/it\/s|s\/it/ { if (++n % 200) next } { print }' >> "$OUT/train.log"
status=${PIPESTATUS[0]}
# wall seconds of each stage this call ran, from `all`'s "<stage>: N s wall" lines
times=$(awk '/^(vae|decoder|text|unet|assemble|probe): [0-9]+ s wall/ { sub(":", "", $1); printf "\"%s\": %s, ", $1, $2 }' "$OUT/train.log")
wall=$(( $(date +%s) - start ))
finished=false
if [ -f "$RUNS/model/model_index.json" ] && { [ "$PROBE" != 1 ] || [ -f "$RUNS/probe/metrics.json" ]; }; then
  finished=true
fi
echo "{$times\"wall_seconds\": $wall, \"exit_status\": $status, \"finished\": $finished, \"resumed\": $resumed, \"with_decoder\": $DECODER, \"with_probe\": $PROBE, \"vae_steps\": \"${VAE_STEPS:-}\", \"unet_steps\": \"${UNET_STEPS:-}\", \"caption_dropout\": \"${CAPTION_DROPOUT:-}\", \"hue_spread\": \"${HUE_SPREAD:-}\"}" \
  > "$OUT/timing.json"
grep -E "^==|s wall|resuming|finished earlier|kept|Error|error" "$OUT/train.log" | tail -20
gzip -f "$OUT/train.log"
tar -czf "$OUT/runs.tgz" --exclude='checkpoint.*' --exclude='latents.safetensors' -C "$RUNS" .
if [ "$(stat -c %s "$OUT/runs.tgz")" -gt $((15 * 1024 * 1024)) ]; then
  split -b 15M -d "$OUT/runs.tgz" "$OUT/runs.tgz.part-" && rm "$OUT/runs.tgz"
fi
cat "$OUT/timing.json"
ls -la "$OUT"
