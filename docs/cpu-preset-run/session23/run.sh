#!/bin/bash
# the cpu preset as committed (vae 4,500 bf16 steps, text, unet 15,000 bf16 steps, no decoder), end to end
set -e
cd "$(dirname "$0")/../../.."
R=runs/cpu3
T0=$(date +%s)
.venv/bin/python -m latentlib.train_shapes vae --out $R/vae > $R/vae.log 2>&1
echo "vae done $(( $(date +%s) - T0 )) s" >> $R/times.txt
.venv/bin/python -m latentlib.train_shapes text --out $R/text > $R/text.log 2>&1
echo "text done $(( $(date +%s) - T0 )) s" >> $R/times.txt
.venv/bin/python -m latentlib.train_shapes unet --out $R/unet --vae $R/vae --text $R/text > $R/unet.log 2>&1
echo "unet done $(( $(date +%s) - T0 )) s" >> $R/times.txt
.venv/bin/python -m latentlib.train_shapes assemble --out $R/model --vae $R/vae --text $R/text --unet $R/unet > $R/assemble.log 2>&1
echo "assemble done $(( $(date +%s) - T0 )) s" >> $R/times.txt
.venv/bin/python -m latentlib.evaluate_shapes --model $R/model --runs $R --card \
  --note "cpu preset (session 23): vae 4,500 steps and unet 15,000 steps, both bf16 autocast, text, no decoder stage, on this 2-core machine." > $R/eval.log 2>&1
echo "eval done $(( $(date +%s) - T0 )) s" >> $R/times.txt
