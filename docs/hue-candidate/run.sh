#!/bin/bash
# The continuous-hue candidate (session 27, 2026-11-28): the shipped version-9 UNet and probe continued on
# the world with hue_spread 0.5 (the VAE and text encoder are version 9's, unchanged), on this 2-core CPU
# machine; then its card and the colour bench, and the same bench on version 9 for comparison. Session 27 ran
# these lines with R=/work/exp/v10/runs (the commands recorded in unet-metrics.json and probe-metrics.json).
set -e
cd "$(dirname "$0")/../.."
M=latentlib/weights/shapes
R=runs/hue-candidate
export HF_HUB_OFFLINE=1
.venv/bin/python -m latentlib.train_shapes probe --out $R/probe --init latentlib/weights/shapes-probe --hue-spread 0.5 \
  --steps 1500 --lr 3e-4                                                            # 6.0 min
.venv/bin/python -m latentlib.train_shapes unet --out $R/unet --vae $M/vae --text $M --init $M --hue-spread 0.5 \
  --steps 2500 --lr 2e-4 --scenes 30000                                             # 14.4 min
.venv/bin/python -m latentlib.train_shapes assemble --out $R/model --vae $M/vae --text $M --unet $R/unet
.venv/bin/python -m latentlib.evaluate_shapes --model $R/model --probe $R/probe --card   # $R/model/MODEL_CARD.md
.venv/bin/python bench/bench_colour.py --model $R/model --probe $R/probe --out bench/results/colour_v10.json
.venv/bin/python bench/bench_colour.py --out bench/results/colour_v9.json
