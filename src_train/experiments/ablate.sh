#!/usr/bin/env bash
# Ablation queue: one factor at a time against the base recipe, 100 steps each (33 for the 3x costlier stem stride 1).
# A row whose record (docs/results/recipe/<name>.json) exists is skipped, so the script runs what is missing;
# several workers can run it side by side (a row is claimed by creating runs/recipe/.claims/<name>).
# Table: python src_train/experiments/recipe_table.py --prefix abl_
cd "$(dirname "$0")/../.."
R="env OMP_NUM_THREADS=1 .venv/bin/python src_train/experiments/recipe.py --widths 24 48 96 192 --blocks 1 --size 256 --lr 2e-3 --validate-every 50 --checkpoint-every 50"
run() {  # name, options that differ from the common ones (the later of two equal options wins)
  name=$1; shift
  [ -f docs/results/recipe/$name.json ] && return 0
  mkdir -p runs/recipe/.claims && mkdir runs/recipe/.claims/$name 2>/dev/null || return 0
  $R --name $name "$@"
}
run abl_base --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100
run abl_ss_focal --norm batch --stem-stride 2 --loss ss_focal --stain --steps 100
run abl_group_norm --norm group --stem-stride 2 --loss dice_ce --stain --steps 100
run abl_no_stain --norm batch --stem-stride 2 --loss dice_ce --steps 100
run abl_stem_stride1 --norm batch --stem-stride 1 --loss dice_ce --stain --steps 33
# session 4: the peak learning rate, halved and doubled
run abl_lr1e-3 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --lr 1e-3
run abl_lr4e-3 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --lr 4e-3
# session 4: patch side 128 at the base's pixel budget (4x the steps of 256 px), and depth (2 blocks per level)
run abl_size128 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 400 --size 128
run abl_blocks2 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --blocks 2
# session 5: input resolution 0.5 um/px (images and masks resampled by 0.5, labels mapped back for scoring:
# each 256-px patch covers 4x the tissue at the same cost per step), width 32-64-128-256, attention at every level
run abl_res0.5 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --scale 0.5
run abl_width32 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --widths 32 64 128 256
run abl_level_attention --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --level-attention
# patch side 384 at the base's pixel budget (44 steps of 384 px ~ 100 of 256 px); warm-up shortened in
# proportion (22 of 44 steps, as 50 of 100), else the learning rate would never reach its peak
run abl_size384 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 44 --size 384 --warmup 22
# the paper's loss after a cross-entropy warm start: 50 steps of Dice + CE, then 50 more steps (a new
# 10-step warm-up and cosine cycle) with SS + focal; the control continues with Dice + CE the same way
run abl_warm_ce50 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 50
while [ ! -f docs/results/recipe/abl_warm_ce50.json ]; do sleep 30; done  # another worker may be running it
run abl_ce_then_ss_focal --norm batch --stem-stride 2 --loss ss_focal --stain --steps 50 --warmup 10 --init runs/recipe/abl_warm_ce50/best.safetensors
run abl_ce_then_ce --norm batch --stem-stride 2 --loss dice_ce --stain --steps 50 --warmup 10 --init runs/recipe/abl_warm_ce50/best.safetensors
