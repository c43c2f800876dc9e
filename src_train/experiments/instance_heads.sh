#!/usr/bin/env bash
# Nuclei v2, item 2 and 3: the instance-aware outputs at one fixed short budget, one factor at a time.
# Every row continues from the bundled v1 model's weights (the same start for every head; a new head
# for the instance-aware kinds), 600 steps of 128-px patches, batch 8, lr 5e-4 cosine, Dice + CE,
# stain jitter, bf16 autocast, one thread; scored on the 6 held-out training images at their own
# scale and downsampled 2x (segmented as given). Table: python src_train/experiments/recipe_table.py --prefix ih_
# Usage: bash src_train/experiments/instance_heads.sh [ROW ...]   (default: every row without a record)
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
INIT=src_train/checkpoints/nuclei_v1.safetensors  # the default model when these rows ran
COMMON=(--init "$INIT" --size 128 --batch 8 --steps 600 --lr 5e-4 --warmup 30 --stain --precision bf16
        --validate-every 0 --checkpoint-every 100 --threads 1)
declare -A ROWS=(
  [ih_classes]="--output classes"
  [ih_contour]="--output contour"
  [ih_distance]="--output distance"
  [ih_hover]="--output hover"
  [ih_contour_scale]="--output contour --scale-range 0.5 1.5"
  [ih_hover_scale]="--output hover --scale-range 0.5 1.5"
  [ih_distance_scale]="--output distance --scale-range 0.5 1.5"
)
ORDER=(ih_classes ih_contour ih_distance ih_hover ih_hover_scale ih_distance_scale)
[ $# -gt 0 ] && ORDER=("$@")
for name in "${ORDER[@]}"; do
  [ -f "docs/results/recipe/$name.json" ] && { echo "skip $name (recorded)"; continue; }
  # shellcheck disable=SC2086
  "$PY" src_train/experiments/recipe.py --name "$name" "${COMMON[@]}" ${ROWS[$name]}
done
