#!/usr/bin/env bash
# The prepared GPU run of the fast-path benchmark (issue 8): SD 1.5 (512x512) and SDXL (1024x1024) shaped
# models with random weights, diffusers against latentlib's fast path, in at most 8 minutes on one H100/H200.
# Writes the JSONs (fast-sd15, fast-sdxl, host), the logs and nvidia-smi's view under ${OUT:-bench/results/gpu-fast}.
#   OUT=/some/dir bash bench/gpu_fast.sh
# AUTOTUNE=coordinate-descent (or max-autotune) tunes SD 1.5's compiled kernels (latentlib.fast's autotune);
# the cold compile takes longer, so raise SD15_S and lower SDXL_S (or skip SDXL: SDXL_S=1) to stay in the slot.
# ALSO_AUTOTUNE=coordinate-descent keeps SD 1.5's run untuned, then compiles again with that tuning and times the
# batch-1/2 UNet steps and the live frame in the same process (like for like), e.g.
#   ALSO_AUTOTUNE=coordinate-descent SD15_S=530 SDXL_S=1 WHEELS=.whl OUT=$OUT bash bench/gpu_fast.sh
# STATIC=1 compiles SD 1.5's UNet and decoders once per batch size (accelerate's static_shapes): more warm-up.
# ATTENTION=cudnn (or flash, efficient, math) puts that SDPA kernel first for SD 1.5's fast UNet (accelerate's attention).
# INDUCTOR=combo_kernels=1 (name=value,...) adds Inductor options to SD 1.5's compiles (accelerate's inductor).
# TUNED_FROM=bench/results/gpu-tuning-last/unet_tuning.json sets AUTOTUNE, STATIC, ATTENTION, INDUCTOR from gpu_tuning.sh's
# fastest batch-2 variant (bench/pick_tuning.py; kept as found when it cannot pick), for a second call on the
# same warm machine right after the tuning run.
# The whole run takes at most TOTAL_S (default 470 s, with the wheel install): SD 1.5 gets up to SD15_S (360),
# the host bench HOST_S (30), and SDXL what is left (skipped, with a line in the log, when under SDXL_MIN_S, 60).
# An explicit SDXL_S replaces "what is left" (SDXL_S=1 skips it in effect); then the bound is the sum.
# On the project's lent GPU machines diffusers is not installed: carry its wheel (see bench/README.md) and
# set WHEELS=.whl to install it into /tmp/site first.
set -uo pipefail
OUT=${OUT:-bench/results/gpu-fast}
PY=${PY:-python3}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
$PY -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__, torch.cuda.get_device_name())" | tee "$OUT/versions.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" || true
# SD 1.5 with everything on (compile included), then SDXL with CUDA graphs but without compile (two
# 2.6B-parameter compiles from a cold cache would not fit the slot). Each writes its JSON after its model.
status=0
if [ -n "${TUNED_FROM:-}" ]; then
  # pick_tuning prints a comment and AUTOTUNE=, STATIC=, ATTENTION=, INDUCTOR= (all four, shell-quoted); when it cannot
  # pick, its reason becomes comment lines and the variables stay as they were
  picked=$($PY bench/pick_tuning.py "$TUNED_FROM" 2> "$OUT/picked.err") \
    || picked="# nothing picked from $TUNED_FROM"$'\n'"$(sed 's/^/# /' "$OUT/picked.err")"
  echo "$picked" | tee "$OUT/picked.txt"
  eval "$picked"
fi
also=()
[ -n "${ALSO_AUTOTUNE:-}" ] && also=(--also-autotune "$ALSO_AUTOTUNE")
[ -n "${STATIC:-}" ] && also+=(--static-shapes)
[ -n "${ATTENTION:-}" ] && also+=(--attention "$ATTENTION")
[ -n "${INDUCTOR:-}" ] && also+=(--inductor "$INDUCTOR")
timeout "${SD15_S:-360}" $PY bench/bench_fast.py --device cuda --models sd15 --autotune "${AUTOTUNE:-off}" ${also[@]+"${also[@]}"} \
  --out "$OUT/fast-sd15.json" 2>&1 \
  | tee "$OUT/bench-sd15.log" || status=1
sdxl_s=${SDXL_S:-$(( ${TOTAL_S:-470} - SECONDS - ${HOST_S:-30} ))}
if [ "$sdxl_s" -ge "${SDXL_MIN_S:-60}" ] || [ -n "${SDXL_S:-}" ]; then
  timeout "$sdxl_s" $PY bench/bench_fast.py --device cuda --models sdxl --compile off --out "$OUT/fast-sdxl.json" 2>&1 \
    | tee "$OUT/bench-sdxl.log" || status=1
else
  echo "SDXL skipped: ${sdxl_s} s of TOTAL_S=${TOTAL_S:-470} left after SD 1.5 (SDXL_MIN_S=${SDXL_MIN_S:-60})" \
    | tee "$OUT/bench-sdxl.log"
fi
# The live frame's host work on this machine (networks replaced by stand-ins; bench_host.py), last: it is
# the cheapest part to lose if the slot runs out.
timeout "${HOST_S:-30}" $PY bench/bench_host.py --device cuda --repeats 100 --profile 25 --out "$OUT/host.json" 2>&1 \
  | tee "$OUT/bench-host.log" || status=1
exit $status
