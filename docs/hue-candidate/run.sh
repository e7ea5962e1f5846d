#!/bin/bash
# The continuous-hue candidate (session 27, 2026-11-28), shipped as version 10 in session 29: version 9's UNet
# and probe continued on the world with hue_spread 0.5 (the VAE and text encoder are version 9's, unchanged),
# on this 2-core CPU machine; then its card and the colour bench, and the same bench on version 9 for
# comparison. Session 27 ran these lines with R=/work/exp/v10/runs and M=latentlib/weights/shapes, which then
# held version 9 (the commands recorded in the shipped training/unet-metrics.json and probe-metrics.json);
# session 28 made the probe again that way and session 29 the UNet. The shipped folders now hold version 10,
# so this script takes version 9 from the git history (commit 6ed8d36); it needs a git checkout.
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
.venv/bin/python -m latentlib.evaluate_shapes --model $R/model --runs $R --card   # $R/model/MODEL_CARD.md, judged
                                                              # by $R/probe, with version 9's UNet history
.venv/bin/python bench/bench_colour.py --model $R/model --probe $R/probe --out bench/results/colour_v10.json
.venv/bin/python bench/bench_colour.py --model $M --probe $V9/latentlib/weights/shapes-probe \
  --out bench/results/colour_v9.json
