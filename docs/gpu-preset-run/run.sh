#!/usr/bin/env bash
# Session 28's gpu-preset run (2026-11-28, one NVIDIA H200), as it was issued through the device tool from the
# repository root at commit acd7b8b, with the diffusers wheel carried in .whl (bench/README.md). The first
# call ran out of its budget in the unet stage; the second, on the same warm machine, continued it.
set -euo pipefail
OUT=${OUT:-bench/results/gpu-shapes}
# call 1 (timing-call1.json: 536 s in the script's budget; 550 s as the device tool timed it, wheel install
# included): vae, text, unet cut after step 8,155 (the last progress line; checkpoint at 8,000)
OUT=$OUT DECODER=0 VAE_STEPS=4500 UNET_STEPS=9000 PROBE=0 HUE_SPREAD=0.5 BUDGET_S=535 WHEELS=.whl \
  bash bench/gpu_shapes.sh || true
# call 2 (timing-call2.json: 46 s; 56 s as the device tool timed it): the unet continued from step 8,000, then assemble
OUT=$OUT DECODER=0 VAE_STEPS=4500 UNET_STEPS=9000 PROBE=0 HUE_SPREAD=0.5 BUDGET_S=255 RESUME=1 WHEELS=.whl \
  bash bench/gpu_shapes.sh
# call 3 (165 s wall, probe-call3.log; 141.8 s in its training loop): the probe stage
PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 python3 -m latentlib.train_shapes probe --out "$OUT/probe" --preset gpu \
  --device cuda --hue-spread 0.5
# Then, on the 2-core CPU machine, with runs.tgz unpacked into runs/ and the probe in runs/probe (5 min):
#   python -m latentlib.evaluate_shapes --model runs/model --runs runs --card
#   python bench/bench_colour.py --model runs/model --probe runs/probe --out bench/results/colour_gpu10.json
