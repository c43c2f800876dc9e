#!/usr/bin/env bash
# Ablation queue: one factor at a time against the base recipe, 100 steps each (33 for the 3x costlier stem stride 1).
cd "$(dirname "$0")/../.."
R="env OMP_NUM_THREADS=1 .venv/bin/python src_train/experiments/recipe.py --widths 24 48 96 192 --blocks 1 --size 256 --lr 2e-3 --validate-every 50 --checkpoint-every 50"
$R --name abl_base --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100
$R --name abl_ss_focal --norm batch --stem-stride 2 --loss ss_focal --stain --steps 100
$R --name abl_group_norm --norm group --stem-stride 2 --loss dice_ce --stain --steps 100
$R --name abl_no_stain --norm batch --stem-stride 2 --loss dice_ce --steps 100
$R --name abl_stem_stride1 --norm batch --stem-stride 1 --loss dice_ce --stain --steps 33
# session 4: the peak learning rate, halved and doubled (the later --lr wins)
$R --name abl_lr1e-3 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --lr 1e-3
$R --name abl_lr4e-3 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --lr 4e-3
# session 4: patch side 128 at the base's pixel budget (4x the steps of 256 px), and depth (2 blocks per level)
$R --name abl_size128 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 400 --size 128
$R --name abl_blocks2 --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100 --blocks 2
