#!/usr/bin/env bash
# Score a gland model the way a user runs it: `genselfdiff segment --instances` on the GlaS TEST images
# (testA: 60, testB: 20; the final report only, never used to choose anything), each a JPEG that records
# no resolution (taken as the model's training images': GlaS's 0.62 um/px), then `genselfdiff evaluate
# --instances --glas --by-prefix` (per-image means; pixel F1/IoU, object F1, object Dice, object Hausdorff;
# testA and testB apart).
# Usage: bash src_train/experiments/score_glands_cli.sh MODEL OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=$1; OUT=$2
G=${G:-.venv/bin/genselfdiff}
GLAS=$(cd ../shared/data/glas && pwd)
mkdir -p "$OUT/images" "$OUT/truth"
for f in "$GLAS"/images/test[AB]_*.jpg; do ln -sf "$f" "$OUT/images/"; done
for f in "$GLAS"/masks/test[AB]_*.png; do ln -sf "$f" "$OUT/truth/"; done
"$G" segment "$OUT/images" --model "$MODEL" --instances --out "$OUT/pred" --overwrite > "$OUT/segment.txt"
"$G" evaluate --pred "$OUT/pred" --gt "$OUT/truth" --instances --glas --by-prefix --json "$OUT/test.json" > "$OUT/test.txt"
tail -n 8 "$OUT/test.txt"
