#!/usr/bin/env bash
# Does a diffusion-pretrained start catch up at a longer budget? The comparison of glas_pretrain_vs_scratch.sh
# with all 69 non-held-out training images at 10x its budget (1000 steps of 8 x 256 px at half resolution instead
# of 100), one seed, the four starts (scratch, pre_trans, pre_train, nuclei); scored on the 16 held-out images.
# Records docs/results/glas/glong69_<start>_s0.json; table:
#   python src_train/experiments/glas_pretrain_vs_scratch_table.py --sizes long69
# Several workers can run side by side (runs are claimed by their folder).
set -uo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
RECIPE="--scale 0.5 --steps 1000 --warmup 30 --validate-every 0 --checkpoint-every 100 --precision bf16"
mkdir -p runs/glas
for start in scratch pre_train nuclei pre_trans; do
  name=glong69_${start}_s0
  [ -f docs/results/glas/$name.json ] && continue
  mkdir runs/glas/$name 2>/dev/null || continue
  case $start in
    scratch) init=scratch ;;
    pre_trans) init=src_train/checkpoints/pretrained_nuclei_1000steps.safetensors ;;
    pre_train) init=src_train/checkpoints/pretrained_glas_train_1000steps.safetensors ;;
    nuclei) init=src_train/checkpoints/nuclei_v1.safetensors ;;
  esac
  $PY src_train/experiments/glas.py --name $name --init $init --seed 0 $RECIPE
done
