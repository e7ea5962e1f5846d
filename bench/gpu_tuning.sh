#!/usr/bin/env bash
# The prepared GPU run for issue 8's batch-2 (CFG) UNet step: bench_unet_tuning.py alone, on SD 1.5's layout.
# First the UNet's attention calls timed with each SDPA kernel (seconds, no compile); then static-shape compiles,
# with PyTorch's attention and with the kernel those timings favour first (+best: skipped when none beats
# PyTorch's choice by 5%), the default (symbolic-batch) compile, untuned, like for like, and static with Inductor's
# combo kernels. Static variants compile and time batch 2 only (their batch 1 is the default's first compile).
# The JSON is rewritten after every measurement, so a cut-short run keeps what it finished.
# Writes unet_tuning.json, the log and nvidia-smi's view under ${OUT:-bench/results/gpu-tuning}.
#   WHEELS=.whl OUT=$OUT bash bench/gpu_tuning.sh          # carry .whl (diffusers' wheel, see bench/README.md)
# VARIANTS and BATCHES override the defaults; TUNING_S (default 560) bounds the whole run.
# The JSON is also copied to KEEP (default bench/results/gpu-tuning-last, ignored by git), where a second call on
# the same warm machine finds it: TUNED_FROM=$KEEP/unet_tuning.json bash bench/gpu_fast.sh runs the winner in full.
set -uo pipefail
OUT=${OUT:-bench/results/gpu-tuning}
PY=${PY:-python3}
mkdir -p "$OUT"
source "$(dirname "$0")/gpu_env.sh"
# The fast UNet enters its attention order inside the compiled function, so the kernel is part of the Dynamo
# graph; should a torch trace it otherwise, variants differing only in kernel would share an AOTAutograd cache
# entry (keyed before the kernel is chosen). That cache is off here; Inductor's own, keyed after it, stays on.
# The profiler keeps CUPTI loaded between its passes, as Inductor does next to CUDA graphs.
export TORCHINDUCTOR_AUTOGRAD_CACHE=${TORCHINDUCTOR_AUTOGRAD_CACHE:-0} TEARDOWN_CUPTI=${TEARDOWN_CUPTI:-0}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" || true
keep=${KEEP:-bench/results/gpu-tuning-last}
rm -f "$OUT/unet_tuning.json" "$keep/unet_tuning.json"  # a run that writes none must not pass on an older one
timeout "${TUNING_S:-560}" $PY bench/bench_unet_tuning.py --device cuda \
  --variants "${VARIANTS:-off+static,off+static+best,off,off+static+combo}" --batches "${BATCHES:-1,2}" \
  --out "$OUT/unet_tuning.json" 2>&1 | grep -v "should be kept in float32" | tee "$OUT/tuning.log"
status=$?
mkdir -p "$keep" && cp "$OUT/unet_tuning.json" "$keep/" 2>/dev/null || echo "no unet_tuning.json to keep in $keep"
exit $status
