#!/usr/bin/env bash
# Score a nuclei model the way a user runs it: `genselfdiff segment --instances` on the 14 MoNuSeg TEST
# images (final report only), then `genselfdiff evaluate --instances` (per-image means; PQ, DQ, SQ,
# object F1, AJI). Twice: at 40x as published, and as "the 20x set": each image shrunk 2x by area
# averaging and saved as PNG with no resolution recorded (instance truth shrunk by the most frequent id),
# segmented with no option (the resolution is estimated).
# With a third argument `heldout`: the same on the 6 held-out TRAINING images of recipe.py (VALIDATION) instead of
# the test images: how candidates are chosen through the product's whole path (resolution estimate included).
# SEGMENT_ARGS (environment): more options of `genselfdiff segment`, e.g. SEGMENT_ARGS=--flips.
# Usage: bash src_train/experiments/score_cli.sh MODEL OUT_DIR [heldout]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=$1; OUT=$2; SET=${3:-test}
PY=${PY:-.venv/bin/python}; G=${G:-.venv/bin/genselfdiff}
TEST=../shared/data/monuseg/test
mkdir -p "$OUT"
if [ "$SET" = heldout ]; then
  TEST=$OUT/heldout
  "$PY" - "$TEST" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from src_train.experiments.recipe import VALIDATION
out, train = Path(sys.argv[1]), Path("../shared/data/monuseg/train").resolve()
for sub, suffix in (("images", ".tif"), ("instance_masks", ".png")):
    (out / sub).mkdir(parents=True, exist_ok=True)
    for stem in VALIDATION:
        link = out / sub / f"{stem}{suffix}"
        if not link.exists():
            link.symlink_to(train / sub / f"{stem}{suffix}")
PY
fi
"$G" segment "$TEST/images" --model "$MODEL" ${SEGMENT_ARGS:-} --instances --out "$OUT/pred40" --overwrite > "$OUT/segment40.txt"
"$G" evaluate --pred "$OUT/pred40" --gt "$TEST/instance_masks" --instances --json "$OUT/${SET}40.json" > "$OUT/${SET}40.txt"
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
for path in sorted((test / "images").glob("*.tif")):  # the held-out links resolve to .tif files too
    Image.fromarray(shrink(read_array(path), 2)).save(out / "images20" / f"{path.stem}.png")  # no pHYs
    truth = read_array(test / "instance_masks" / f"{path.stem}.png")
    Image.fromarray(shrink_labels(truth, 2).astype(np.uint16)).save(out / "truth20" / f"{path.stem}.png")
PY
"$G" segment "$OUT/images20" --model "$MODEL" ${SEGMENT_ARGS:-} --instances --out "$OUT/pred20" --overwrite > "$OUT/segment20.txt"
"$G" evaluate --pred "$OUT/pred20" --gt "$OUT/truth20" --instances --json "$OUT/${SET}20.json" > "$OUT/${SET}20.txt"
tail -n 3 "$OUT/${SET}40.txt" "$OUT/${SET}20.txt"
