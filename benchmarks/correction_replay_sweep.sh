#!/usr/bin/env bash
# Choosing the Train tab's fine-tuning settings on the correction-loop replay (issue 25), on the tuning
# organ (lung) only: seeds 0 and 1, four corrected fields and one corrected image, 500 steps, scored every
# 100 steps on lung's other images, plus what the model forgets of the other organs (--forgetting).
# One factor changed per row against the row it names. Two lanes, one thread each; resumable.
# Table: python benchmarks/correction_replay_table.py --organs lung
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ROWS=${ROWS:-"$*"}
run() {  # run NAME [KEY=VALUE ...]
  local name=$1; shift
  "$PY" benchmarks/correction_replay.py --name "lung_$name" --organs lung --seeds 0 1 --conditions fields4 image1 \
    --forgetting --set "$@" >> "runs/replay_lung_$name.log" 2>&1
}
declare -A ROW=(
  [defaults]=""                                                  # the Train tab before issue 25: SS + focal, lr 1e-4
  [dicece]="loss=dice_ce"                                        # vs defaults: the bundled model's own loss
  [dicece_lr5e-4]="loss=dice_ce lr=5e-4"                         # vs dicece: learning rate
  [dicece_lr5e-4_b09]="loss=dice_ce lr=5e-4 betas=0.9,0.999"     # vs dicece_lr5e-4: Adam beta1 of the bundled model's training
  [ssfocal_lr5e-4]="lr=5e-4"                                     # vs defaults: learning rate alone
)
lane() { for name in "$@"; do run "$name" ${ROW[$name]}; done; }
if [ -n "$ROWS" ]; then lane $ROWS; exit; fi
lane defaults dicece_lr5e-4 ssfocal_lr5e-4 &
lane dicece dicece_lr5e-4_b09 &
wait
