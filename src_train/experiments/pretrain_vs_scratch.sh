#!/usr/bin/env bash
# Issue 11, item 4: diffusion-pretrained start vs scratch with few labelled images (3 and 10 of the 24
# training images, subsets drawn per seed), 3 seeds, the base recipe at the ablation budget (100 steps),
# scored on the 6 held-out validation images. Records: docs/results/recipe/n{3,10}_{scratch,pre1000}_s{0,1,2}.json
#
#   bash src_train/experiments/pretrain_vs_scratch.sh pretrain     # continue the 400-step pretraining to 1000 steps
#   bash src_train/experiments/pretrain_vs_scratch.sh scratch      # the scratch runs (n3_scratch_s0 existed)
#   bash src_train/experiments/pretrain_vs_scratch.sh pretrained   # the runs from the 1000-step pretrained network
#   bash src_train/experiments/pretrain_vs_scratch.sh small_t      # 10 images, the pretrained start called at t = 50
#   python src_train/experiments/pretrain_vs_scratch_table.py      # the table in docs/results.md
#
# Several `scratch`/`pretrained` workers can run side by side: each run is claimed by creating its run folder
# (runs/recipe/<name>), and a worker skips runs another has claimed.
#
# The pretraining images are unlabeled: GlaS + the pixels of the 30 MoNuSeg training images (the paper's Case II;
# masks are never read). The validation images' pixels are among them, so the pretrained start has seen the
# validation pixels (never their labels); the scratch start has not.
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY=.venv/bin/python
PRE=runs/recipe/pretrain_nuclei_1000
RECIPE="--widths 24 48 96 192 --blocks 1 --norm batch --stem-stride 2 --loss dice_ce --size 256 --steps 100 --lr 2e-3 --stain --validate-every 50 --checkpoint-every 50"
mkdir -p runs/recipe
run_all() {  # start (scratch|pre1000|pre1000t50), init, [names], [extra recipe.py options]
  for name in ${3:-n10_$1_s0 n3_$1_s1 n10_$1_s1 n3_$1_s2 n10_$1_s2 n3_$1_s0}; do
    mkdir runs/recipe/$name 2>/dev/null || continue   # claimed by another worker, or done
    n=${name#n}; n=${n%%_*}; seed=${name##*_s}
    $PY src_train/experiments/recipe.py --name $name --subset $n --seed $seed --init $2 $RECIPE $4
  done
}
case "$1" in
  pretrain)
    if [ ! -d $PRE ]; then cp -r runs/recipe/pretrain_nuclei $PRE; fi  # resume from the 400-step run's checkpoint
    $PY src_train/pretrain.py --images ../shared/data/glas_unlabeled/images ../shared/data/monuseg/train/images \
        --out $PRE --arch nuclei --size 256 --stride 128 --steps 1000 --batch 8 --lr 5e-4 --lr-schedule cosine \
        --warmup-steps 20 --checkpoint-every 50 --threads 1 --resume ;;
  scratch) run_all scratch scratch ;;
  pretrained) run_all pre1000 $PRE/pretrained.safetensors ;;
  small_t) run_all pre1000t50 $PRE/pretrained.safetensors "n10_pre1000t50_s0 n10_pre1000t50_s1 n10_pre1000t50_s2" "--timestep 50" ;;
  *) echo "usage: $0 pretrain|scratch|pretrained|small_t" >&2; exit 2 ;;
esac
