#!/usr/bin/env bash
# Pretrained vs scratch at the ablation budget: DDPM pretraining (P2-weighted epsilon loss, T = 1000) of the
# "nuclei" network on unlabeled images (GlaS + the MoNuSeg training images' pixels, masks never read: the
# paper's Case II), then the base recipe's 100 fine-tuning steps from it (compare with abl_base).
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PRE=runs/recipe/pretrain_nuclei
.venv/bin/python src_train/pretrain.py --images ../shared/data/glas_unlabeled/images ../shared/data/monuseg/train/images \
    --out $PRE --arch nuclei --size 256 --stride 128 --steps 400 --batch 8 --lr 5e-4 --lr-schedule cosine \
    --warmup-steps 20 --checkpoint-every 50 --resume
.venv/bin/python src_train/experiments/recipe.py --name abl_pretrained --init $PRE/pretrained.safetensors \
    --widths 24 48 96 192 --blocks 1 --size 256 --lr 2e-3 --validate-every 50 --checkpoint-every 50 \
    --norm batch --stem-stride 2 --loss dice_ce --stain --steps 100
