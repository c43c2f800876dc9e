#!/usr/bin/env bash
# The paper's claim on GlaS, at this project's budget: a diffusion-pretrained start vs scratch for the gland
# model, with 10, 20 and all 69 non-held-out training images (subsets drawn per seed), 3 seeds, the gland recipe
# at half resolution (glas.py --scale 0.5) and one short fixed budget (100 steps), scored on the 16 held-out
# training images (patients 3, 5, 6). Records: docs/results/glas/g{10,69}_{scratch,pre_trans,nuclei}_s{0,1,2}.json
#
#   bash src_train/experiments/glas_pretrain_vs_scratch.sh            # all runs (skips the ones done or claimed)
#   python src_train/experiments/glas_pretrain_vs_scratch_table.py    # the table in docs/results.md
#
# scratch = a new network of the nuclei preset (attention at the bottleneck only: the network of every other start;
# records before 2026-12-07's third session had attention at every level and are kept as scratch_la).
# pre_trans = src_train/checkpoints/pretrained_nuclei_1000steps.safetensors: 1000 steps of P2-weighted DDPM
# (T = 1000) on the pixels of glas_unlabeled (44 GlaS training + all 80 testA/testB images) and the 30 MoNuSeg
# training images, full resolution. It has seen the TEST images' pixels (never their labels): the paper's
# Case II, transductive. nuclei = src_train/checkpoints/nuclei_v1.safetensors (the nuclei model: diffusion-free,
# trained on MoNuSeg), the start of the shipped gland model. pre_train = the same pretraining on the pixels of the
# 69 non-held-out GlaS TRAINING images and the MoNuSeg training images only (glas_pretrain_train_only.sh; not
# transductive; kept as src_train/checkpoints/pretrained_glas_train_1000steps.safetensors when it has finished);
# its rows are skipped until that file exists.
# Several workers can run side by side: each run is claimed by creating its run folder.
set -uo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
PRE=src_train/checkpoints/pretrained_nuclei_1000steps.safetensors
NUCLEI=src_train/checkpoints/nuclei_v1.safetensors
PRE_TRAIN=src_train/checkpoints/pretrained_glas_train_1000steps.safetensors
STARTS=${STARTS:-scratch pre_trans pre_train nuclei}
SIZES=${SIZES:-10 20 69}
RECIPE="--scale 0.5 --steps 100 --warmup 10 --validate-every 0 --checkpoint-every 50 --precision bf16"
mkdir -p runs/glas
for n in $SIZES; do
  for seed in 0 1 2; do
    for start in $STARTS; do
      name=g${n}_${start}_s${seed}
      [ -f docs/results/glas/$name.json ] && continue
      [ $start = pre_train ] && [ ! -f $PRE_TRAIN ] && continue
      mkdir runs/glas/$name 2>/dev/null || continue   # claimed by another worker
      init=scratch; [ $start = pre_trans ] && init=$PRE; [ $start = nuclei ] && init=$NUCLEI
      [ $start = pre_train ] && init=$PRE_TRAIN
      subset=""; [ $n != 69 ] && subset="--subset $n"
      $PY src_train/experiments/glas.py --name $name --init $init --seed $seed $subset $RECIPE
    done
  done
done
