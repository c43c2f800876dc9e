#!/usr/bin/env bash
# The NON-transductive diffusion pretraining for the GlaS comparison (glas_pretrain_vs_scratch.sh, start
# `pre_train`): the pixels of the 69 GlaS training images outside the held-out patients 3, 5, 6 and of the 30 MoNuSeg
# training images; no testA/testB image, no held-out image. Otherwise the settings of `pre_trans`
# (src_train/checkpoints/pretrained_nuclei_1000steps.safetensors): 1000 steps, batch 8, 256 px patches on a 128-px grid at full
# resolution, lr 5e-4 cosine with 20 warm-up steps, the nuclei network; bf16 where the CPU has it natively
# (pre_trans ran in fp32). Resumable: run it again after an interruption.
#   bash src_train/experiments/glas_pretrain_train_only.sh
#     -> runs/glas_pretrain_train/pretrained.safetensors, kept (fp16) as
#        src_train/checkpoints/pretrained_glas_train_1000steps.safetensors once all 1000 steps are done
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}; G=${G:-.venv/bin/genselfdiff}
POOL=runs/glas_pretrain_train/pool
mkdir -p "$POOL"
"$PY" - "$POOL" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "."); sys.path.insert(0, "src_train/experiments")
from src_train.experiments.glas import VALIDATION_PATIENTS, read_split
pool, glas = Path(sys.argv[1]), Path("../shared/data/glas").resolve()
names = [n for n, patient in read_split(glas)["train"] if patient not in VALIDATION_PATIENTS]
for n in names:
    link = pool / f"{n}.jpg"
    if not link.exists():
        link.symlink_to(glas / "images" / f"{n}.jpg")
print(f"{len(names)} GlaS training images in the pool", flush=True)
PY
"$G" pretrain --images "$POOL" ../shared/data/monuseg/train/images --out runs/glas_pretrain_train --arch nuclei \
  --size 256 --stride 128 --steps 1000 --batch 8 --lr 5e-4 --lr-schedule cosine --warmup-steps 20 --checkpoint-every 50 \
  --precision auto --threads 1 --resume
"$PY" - <<'PY'
from napari_genselfdiff.core.model_files import load_model
from napari_genselfdiff.core.model_files.store import save_model
model, info = load_model("runs/glas_pretrain_train/pretrained.safetensors")
if info.provenance.get("cancelled") or info.provenance.get("steps") != 1000:
    raise SystemExit(f"pretraining not finished ({info.provenance.get('steps')} steps): run this script again")
info.path = None
print("kept as", save_model("src_train/checkpoints/pretrained_glas_train_1000steps.safetensors", model, info, half=True))
PY
