#!/bin/bash
# The continuous-hue candidate (session 27, 2026-11-28), shipped as version 10 in session 29: version 9's UNet
# and probe continued on the world with hue_spread 0.5 (the VAE and text encoder are version 9's, unchanged),
# on this 2-core CPU machine; then its card and the colour bench, and the same bench on version 9 for
# comparison. Sessions 27 and 29 ran these lines with R=/work/exp/v10/runs and version 9 in place of the
# shipped folders (the commands recorded in unet-metrics.json and probe-metrics.json).
# Version 9 is taken from the git history (commit 6ed8d36), since the shipped folders now hold version 10.
set -e
cd "$(dirname "$0")/../.."
R=runs/hue-candidate
V9=$R/version-9
mkdir -p $V9
git archive 6ed8d36 latentlib/weights/shapes latentlib/weights/shapes-probe | tar -x -C $V9
M=$V9/latentlib/weights/shapes
export HF_HUB_OFFLINE=1
.venv/bin/python -m latentlib.train_shapes probe --out $R/probe --init $V9/latentlib/weights/shapes-probe \
  --hue-spread 0.5 --steps 1500 --lr 3e-4                                           # 5-6 min
.venv/bin/python -m latentlib.train_shapes unet --out $R/unet --vae $M/vae --text $M --init $M --hue-spread 0.5 \
  --steps 2500 --lr 2e-4 --scenes 30000                                             # 14-22 min
.venv/bin/python -m latentlib.train_shapes assemble --out $R/model --vae $M/vae --text $M --unet $R/unet
.venv/bin/python -m latentlib.evaluate_shapes --model $R/model --probe $R/probe --card   # $R/model/MODEL_CARD.md
.venv/bin/python bench/bench_colour.py --model $R/model --probe $R/probe --out bench/results/colour_v10.json
.venv/bin/python bench/bench_colour.py --model $M --probe $V9/latentlib/weights/shapes-probe \
  --out bench/results/colour_v9.json
