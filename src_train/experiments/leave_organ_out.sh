#!/usr/bin/env bash
# The correction-loop replay's base models (issue 25): one per organ, trained from scratch on the 24 MoNuSeg
# training images of the other organs with the v2 recipe's output and augmentation (distance map, patch
# rescaling 0.5-1.5x, stain jitter), so each has never seen its organ. lung is the organ the fine-tune
# settings are chosen on; breast, kidney and prostate are the replay's. Two lanes, one thread each;
# resumable (run it again after an interruption).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
STEPS=${STEPS:-1500}
COMMON=(--init scratch --output distance --scale-range 0.5 1.5 --size 128 --batch 8 --steps "$STEPS"
        --lr 2e-3 --warmup 50 --stain --precision bf16 --checkpoint-every 100 --threads 1)
lane() { for organ in "$@"; do
  "$PY" src_train/experiments/recipe.py --name "loo_$organ" --leave-out "$organ" "${COMMON[@]}" > "runs/loo_$organ.log" 2>&1
done; }
lane lung kidney &
lane breast prostate &
wait
