#!/usr/bin/env bash
# Nuclei v3 candidates: one factor at a time from the same start, at one budget. Start: `v2_long` (the shipped v2
# recipe trained 3000 steps on the 24 training images, without the 6 held-out ones); each row trains 1200 more
# steps with the v2 recipe (distance output, rescaling 0.5-1.5x, 8 x 128 px, lr 5e-4 cosine, bf16, one thread) and
# is scored on the 6 held-out images at their own scale and downsampled 2x.
#   w_control  the same network, 1200 more steps (what more training alone gives)
#   w_grown    the network grown first (core/network/grow.py, function-preserving): widths 24-48-96-192 ->
#              32-64-128-192, 1 -> 2 residual blocks per level (4.4 M -> 7.3 M parameters)
#   w_cue3     the same network, the distance map's loss weighted 3x (--cue-weight 3)
#   w_control_s1, w_cue3_s1   the same two with another seed (patch draws, augmentation): how large is the noise?
#   w_stain2, w_stain2_s1     the stain jitter twice as strong (--stain-strength 2), seeds 0 and 1 (2026-12-08)
#   w_elastic, w_elastic_s1   elastic deformation of every patch (--elastic), seeds 0 and 1 (2026-12-08, later)
# and the shipped candidates, the chosen row's recipe from `v2_final` (the shipped v2, all 30 images), no validation:
#   v21_final       1200 more steps (the w_control row)
#   v21_final_cue3  1200 more steps with --cue-weight 3 (the w_cue3 row)
# Usage: bash src_train/experiments/nuclei_v3.sh ROW [ROW ...]   (rows run one after another; resumable)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
COMMON=(--init runs/recipe/v2_long/best.safetensors --output distance --scale-range 0.5 1.5 --size 128 --batch 8
        --steps 1200 --lr 5e-4 --warmup 30 --stain --precision bf16 --checkpoint-every 200 --threads 1
        --validate-every 0 --val-scales 1 0.5)
for row in "$@"; do
  case $row in
    w_control) extra=() ;;
    w_grown) extra=(--grow-widths 32 64 128 192 --grow-blocks 2) ;;
    w_cue3) extra=(--cue-weight 3) ;;
    w_control_s1) extra=(--seed 1) ;;
    w_cue3_s1) extra=(--cue-weight 3 --seed 1) ;;
    w_stain2) extra=(--stain-strength 2) ;;
    w_stain2_s1) extra=(--stain-strength 2 --seed 1) ;;
    w_elastic) extra=(--elastic) ;;
    w_elastic_s1) extra=(--elastic --seed 1) ;;
    v21_final) extra=(--final --init runs/recipe/v2_final/last.safetensors) ;;
    v21_final_cue3) extra=(--final --init runs/recipe/v2_final/last.safetensors --cue-weight 3) ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
  esac
  "$PY" src_train/experiments/recipe.py --name "$row" "${COMMON[@]}" "${extra[@]}" > "runs/$row.log" 2>&1
done
