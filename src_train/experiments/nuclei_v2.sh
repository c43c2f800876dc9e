#!/usr/bin/env bash
# Nuclei v2: the recipe chosen in instance_heads.sh (distance-map output + random patch rescaling 0.5-1.5x),
# trained long from the v1 weights (src_train/checkpoints/nuclei_v1.safetensors, the default model until
# 2026-12-07). Two runs side by side, one thread each:
#   v2_long   24 training images, validated on the 6 held-out ones every 1000 steps (does it keep improving?)
#   v2_final  all 30 training images, same steps (the shipped model when v2_long still improves at the end)
# Both resumable: run the script again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-3000}
COMMON=(--init src_train/checkpoints/nuclei_v1.safetensors --output distance --scale-range 0.5 1.5
        --size 128 --batch 8 --steps "$STEPS" --lr 5e-4 --warmup 30 --stain --precision bf16
        --checkpoint-every 200 --threads 1)
"$PY" src_train/experiments/recipe.py --name v2_long "${COMMON[@]}" --validate-every 1000 > runs/v2_long.log 2>&1 &
"$PY" src_train/experiments/recipe.py --name v2_final "${COMMON[@]}" --final > runs/v2_final.log 2>&1 &
wait
