#!/usr/bin/env bash
# GUI stalls while a result's layers are added (benchmarks/ui_layers.py), before and after a change to the
# plugin, back to back, twice: the plugin's widget files of BASE against the working tree's.
#   bash benchmarks/ui_layers_before_after.sh BASE OUT_DIR
# Writes OUT_DIR/{before,after}_{1,2}.jsonl. The working tree's versions of the files are put back at the end
# (commit them first: they are checked out again from HEAD).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:?base commit}; OUT=${2:?output folder}
PY=${PY:-.venv/bin/python}
FILES="napari_genselfdiff/plugin/widgets/segment_panel.py napari_genselfdiff/plugin/_slide_widget.py"
mkdir -p "$OUT"
trap 'git checkout -- $FILES' EXIT
for round in 1 2; do
  for f in $FILES; do git show "$BASE:$f" > "$f"; done
  nice -n 5 xvfb-run -a "$PY" benchmarks/ui_layers.py --repeats 5 --cases sample,large --out "$OUT/before_$round.jsonl"
  git checkout -- $FILES
  nice -n 5 xvfb-run -a "$PY" benchmarks/ui_layers.py --repeats 5 --cases sample,large --out "$OUT/after_$round.jsonl"
done
