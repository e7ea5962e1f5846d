#!/bin/bash
# cpu preset without the decoder stage, unet 15k steps bf16: does it reach the bars in ~2 h on 2 cores?
set -e
cd /work/main
R=/work/runs/cpu2h
T0=$(date +%s)
.venv/bin/python -m latentlib.train_shapes vae --out $R/vae > $R/vae.log 2>&1
echo "vae done $(( $(date +%s) - T0 )) s" >> $R/times.txt
.venv/bin/python -m latentlib.train_shapes text --out $R/text > $R/text.log 2>&1
echo "text done $(( $(date +%s) - T0 )) s" >> $R/times.txt
.venv/bin/python -m latentlib.train_shapes unet --out $R/unet --vae $R/vae --text $R/text --steps 15000 --amp bf16 > $R/unet.log 2>&1
echo "unet done $(( $(date +%s) - T0 )) s" >> $R/times.txt
.venv/bin/python -m latentlib.train_shapes assemble --out $R/model --vae $R/vae --text $R/text --unet $R/unet > $R/assemble.log 2>&1
echo "assemble done $(( $(date +%s) - T0 )) s" >> $R/times.txt
