#!/usr/bin/env bash
# Does stronger stain jitter help on an organ (and its hospitals) a model never saw? The leave-organ-out base
# models of the correction-loop replay (leave_organ_out.sh: the v2 recipe from scratch, 1500 steps, stain jitter
# at its default strength) against the same with the jitter twice as strong (--stain-strength 2), on the two
# organs the base models did worst on (lung, prostate), and the default recipe with another seed (the noise).
# Scored on all six images of the left-out organ (organ_scores.py). Two lanes, one thread each; resumable.
#   bash src_train/experiments/stain_strength_loo.sh            (both organs, one lane each)
#   bash src_train/experiments/stain_strength_loo.sh prostate   (one organ)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
COMMON=(--init scratch --output distance --scale-range 0.5 1.5 --size 128 --batch 8 --steps 1500
        --lr 2e-3 --warmup 50 --stain --precision bf16 --checkpoint-every 100 --threads 1)
OUT=docs/results/nuclei_v3/stain_strength_loo.jsonl
lane() {
  local organ=$1
  "$PY" src_train/experiments/recipe.py --name "loo_${organ}_s1" --leave-out "$organ" --seed 1 "${COMMON[@]}" \
    > "runs/loo_${organ}_s1.log" 2>&1
  "$PY" src_train/experiments/recipe.py --name "loo_${organ}_stain2" --leave-out "$organ" --stain-strength 2 "${COMMON[@]}" \
    > "runs/loo_${organ}_stain2.log" 2>&1
  "$PY" src_train/experiments/organ_scores.py --organ "$organ" --out "$OUT" \
    --model "runs/recipe/loo_${organ}/last.safetensors" --model "runs/recipe/loo_${organ}_s1/last.safetensors" \
    --model "runs/recipe/loo_${organ}_stain2/last.safetensors" > "runs/organ_scores_${organ}.log" 2>&1
}
if [ $# -gt 0 ]; then for organ in "$@"; do lane "$organ"; done; exit; fi
lane lung &
lane prostate &
wait
