#!/usr/bin/env bash
# The correction-loop replay on the three report organs (breast, kidney, prostate; never used to choose a
# setting), three seeds (issue 25):
#   shipped   the Train tab's defaults (core/training/corrections.py: CORRECTION_RECIPE), all three conditions,
#             run to twice the default step count to show the curve (the default's model: step 200)
#   before    the Train tab before issue 25 (SS + focal, lr 1e-4, betas 0.5, batch-norm statistics updated),
#             one corrected image
#   pretrain_continued / pretrain_scratch: diffusion pretraining on the organ's six images (250 steps), then
#             the shipped fine-tune, one corrected image; the shipped run's longer curve gives fine-tuning
#             alone the same total CPU time
# Three lanes of one thread; resumable. Table and plot: see docs/results.md, "The correction loop, replayed".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
R=(benchmarks/correction_replay.py --organs breast kidney prostate --seeds 0 1 2)
case "${1:-all}" in
  shipped) "$PY" "${R[@]}" --name shipped --steps 400 --score-every 100 --forgetting --test ../shared/data/monuseg/test ;;
  before) "$PY" "${R[@]}" --name before --conditions image1 --score-every 250 --forgetting --test ../shared/data/monuseg/test \
            --set steps=500 loss=ss_focal lr=1e-4 betas=0.5,0.999 freeze_norm=false use_instances=false stain_jitter=false ;;
  pretrain) "$PY" "${R[@]}" --name pretrain_continued --conditions image1 --score-every 100 --pretrain continued
            "$PY" "${R[@]}" --name pretrain_scratch --conditions image1 --score-every 100 --pretrain scratch ;;
  all) bash "$0" shipped > runs/replay_shipped.log 2>&1 &
       bash "$0" before > runs/replay_before.log 2>&1 &
       bash "$0" pretrain > runs/replay_pretrain.log 2>&1 &
       wait ;;
esac
