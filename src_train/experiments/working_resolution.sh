#!/usr/bin/env bash
# The nuclei model's working resolution (genselfdiff segment --model-mpp), on the 6 HELD-OUT training images
# (recipe.VALIDATION), with the images' resolution given (40x: --mpp 0.25; the 20x set: --mpp 0.5), through the
# product's command line. Needs the held-out links and the 20x set that `score_cli.sh MODEL DIR heldout` makes
# (DIR=runs/heldout_cli/b_v2_long) and the bundled v2_long model (the v2 recipe without the held-out images).
# Usage: bash src_train/experiments/working_resolution.sh [MPP ...]   (MODEL=another bundled candidate, NAME=its tag)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
G=.venv/bin/genselfdiff; B=runs/heldout_cli/b_v2_long; M=${MODEL:-runs/bundles/v2_long.safetensors}
for m in ${@:-0.25 0.2 0.22 0.28 0.32}; do
  O=runs/heldout_cli/wr${NAME:-}_$m; mkdir -p $O
  $G segment $B/heldout/images --model $M --mpp 0.25 --model-mpp $m --instances --out $O/pred40 --overwrite > $O/seg40.txt
  $G evaluate --pred $O/pred40 --gt $B/heldout/instance_masks --instances --json $O/h40.json > $O/h40.txt
  $G segment $B/images20 --model $M --mpp 0.5 --model-mpp $m --instances --out $O/pred20 --overwrite > $O/seg20.txt
  $G evaluate --pred $O/pred20 --gt $B/truth20 --instances --json $O/h20.json > $O/h20.txt
  echo "model-mpp $m"; grep "^mean (n" $O/h40.txt $O/h20.txt
done
