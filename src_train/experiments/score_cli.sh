#!/usr/bin/env bash
# Score a nuclei model the way a user runs it: `genselfdiff segment --instances` on the 14 MoNuSeg TEST
# images (final report only), then `genselfdiff evaluate --instances` (per-image means; PQ, DQ, SQ,
# object F1, AJI). Twice: at 40x as published, and as "the 20x set": each image shrunk 2x by area
# averaging and saved as PNG with no resolution recorded (instance truth shrunk by the most frequent id),
# segmented with no option (the resolution is estimated).
# Usage: bash src_train/experiments/score_cli.sh MODEL OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=$1; OUT=$2
PY=${PY:-.venv/bin/python}; G=${G:-.venv/bin/genselfdiff}
TEST=../shared/data/monuseg/test
mkdir -p "$OUT"
"$G" segment "$TEST/images" --model "$MODEL" --instances --out "$OUT/pred40" --overwrite > "$OUT/segment40.txt"
"$G" evaluate --pred "$OUT/pred40" --gt "$TEST/instance_masks" --instances --json "$OUT/test40.json" > "$OUT/test40.txt"
"$PY" - "$TEST" "$OUT" <<'PY'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
sys.path.insert(0, "benchmarks")
from nucleus_size_reference import shrink, shrink_labels
from napari_genselfdiff.core.io.read import read_array
test, out = Path(sys.argv[1]), Path(sys.argv[2])
(out / "images20").mkdir(exist_ok=True); (out / "truth20").mkdir(exist_ok=True)
for path in sorted((test / "images").glob("*.tif")):
    Image.fromarray(shrink(read_array(path), 2)).save(out / "images20" / f"{path.stem}.png")  # no pHYs
    truth = read_array(test / "instance_masks" / f"{path.stem}.png")
    Image.fromarray(shrink_labels(truth, 2).astype(np.uint16)).save(out / "truth20" / f"{path.stem}.png")
PY
"$G" segment "$OUT/images20" --model "$MODEL" --instances --out "$OUT/pred20" --overwrite > "$OUT/segment20.txt"
"$G" evaluate --pred "$OUT/pred20" --gt "$OUT/truth20" --instances --json "$OUT/test20.json" > "$OUT/test20.txt"
tail -n 3 "$OUT/test40.txt" "$OUT/test20.txt"
