#!/usr/bin/env bash
# Choosing the Train tab's fine-tuning settings on the correction-loop replay (issue 25), on the tuning
# organ (lung) only: seeds 0 and 1, four corrected fields and one corrected image, the recipe's steps (500 when
# the first rows up to F_mix2 ran, 200 since the choice; --steps or steps= in a row say otherwise), scored every
# 100 steps on lung's other images, plus what the model forgets of the other organs (--forgetting, judged at the
# recipe's steps). Each row's record (runs/replay/<name>/command.json, copied to docs/results/replay/) holds the
# recipe it ran. One factor changed per row against the row it names. Two lanes, one thread each; resumable.
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
# Every row names what it ran in full (steps, loss, batch-norm statistics, stain jitter), so that re-running it
# reproduces its record whatever CORRECTION_RECIPE says today.
OLD="steps=500 stain_jitter=false"      # the recipe as the first rows ran (500 steps, no stain jitter)
NOW="steps=200 loss=dice_ce freeze_norm=true"  # after the first choice
declare -A ROW=(
  [defaults]="$OLD loss=ss_focal freeze_norm=false"              # the Train tab before issue 25: SS + focal, lr 1e-4
  [dicece]="$OLD loss=dice_ce freeze_norm=false"                 # vs defaults: the bundled model's own loss
  [dicece_freeze]="$OLD loss=dice_ce freeze_norm=true"           # vs dicece: keep the batch-norm statistics
  [F_lr5e-4]="$OLD loss=dice_ce freeze_norm=true lr=5e-4"        # vs dicece_freeze: learning rate
  [F_inst]="$OLD loss=dice_ce freeze_norm=true use_instances=true"  # vs dicece_freeze: the stored nuclei as targets
  [F_mix2]="$OLD loss=dice_ce freeze_norm=true --mix 2"          # vs dicece_freeze: two of the base model's own images mixed in
  # after the choice (200 steps, forgetting judged at 200): the shipped recipe, and a lower lr against forgetting
  [shipped200]="$NOW stain_jitter=false --steps 200"             # the Train tab's defaults as shipped then
  [shipped200_lr3e-5]="$NOW stain_jitter=false lr=3e-5 --steps 200"        # vs shipped200: a lower learning rate
  [shipped200_anchor0.1]="$NOW stain_jitter=false anchor=0.1 --steps 200"  # vs shipped200: L2-SP toward the base model
  [shipped200_anchor1]="$NOW stain_jitter=false anchor=1 --steps 200"      # vs shipped200: L2-SP, stronger
  [shipped200_anchor10]="$NOW stain_jitter=false anchor=10 --steps 200"    # vs shipped200: L2-SP, stronger still
  # 2026-12-08: augmenting the corrected patches as the bundled model trained, the precision, three images
  [F_stain]="$NOW stain_jitter=true"                             # vs shipped200: HED stain jitter (adopted)
  [F_scale]="$NOW stain_jitter=false scale_range=0.5,1.5"        # vs shipped200: patch rescaling 0.5-1.5x
  [F_stain500]="$NOW stain_jitter=true --steps 500"              # F_stain's curve to 500 steps
  [F_stain500_lr2e-4]="$NOW stain_jitter=true lr=2e-4 --steps 500"         # vs F_stain500: lr
  [shipped200_fp32]="$NOW stain_jitter=false --steps 200 --train-precision fp32"  # vs shipped200: fp32 instead of bf16
  [S_images3_600]="$NOW stain_jitter=true --steps 600 --conditions images3"       # the Train tab on 3 images, to 600 steps
  [S_images3_600_judged]="$NOW stain_jitter=true steps=600 --conditions images3"  # the same, forgetting judged at 600
  # 2026-12-08, later: U-Net's augmentation for few annotated images
  [F_stain_elastic]="$NOW stain_jitter=true elastic=true"        # vs F_stain (the Train tab's recipe): elastic deformation
  [F_stain_betas9]="$NOW stain_jitter=true betas=0.9,0.999"     # vs F_stain: Adam's usual beta1 instead of the paper's 0.5
  [F_stain_b8]="$NOW stain_jitter=true batch=8"                  # vs F_stain: twice the patches per step
  [F_stain_p256]="$NOW stain_jitter=true patch=256 batch=1"      # vs F_stain: 256-px patches, the same pixels per step
)
lane() { for name in "$@"; do run "$name" ${ROW[$name]}; done; }
if [ -n "$ROWS" ]; then lane $ROWS; exit; fi
# First round (defaults, dicece, dicece_freeze) showed that fine-tuning without frozen batch-norm
# statistics shrinks the foreground; the rows after it all keep them (F_*).
lane defaults F_lr5e-4 &
lane dicece F_inst &
lane dicece_freeze F_mix2 &
wait
