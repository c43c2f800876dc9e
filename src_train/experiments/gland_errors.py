"""Per-image gland errors on the 16 HELD-OUT GlaS training images (patients 3, 5, 6): predicted vs true gland
counts, object F1 / Dice / Hausdorff by grade, and whether filling holes in predicted glands changes them.

    python src_train/experiments/gland_errors.py runs/glas/glas_half_dist_c2/best.safetensors 0.5

(second argument: the run's glas.py --scale; splitting h 0.3, smooth 2, >= 400 model px, the shipped choice)
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src_train" / "experiments"))
import torch
from glas import GLAS_MPP, VALIDATION_PATIENTS, read_split

from napari_genselfdiff.core.inference import InferenceSettings, segment_progressive
from napari_genselfdiff.core.inference.instances import split_by_distance
from napari_genselfdiff.core.inference.resolution import ResampledView, map_back, resample_factor
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.metrics import glas_scores
from napari_genselfdiff.core.metrics.evaluation import to_label_image
from napari_genselfdiff.core.model_files import load_model
from napari_genselfdiff.core.progress import run_generator

torch.set_num_threads(1)
glas = ROOT.parent / "shared" / "data" / "glas"
grade = {r["name"]: r["grade_glas"] for r in csv.DictReader(open(glas / "splits.csv"))}
names = [n for n, p in read_split(glas)["train"] if p in VALIDATION_PATIENTS]
model, info = load_model(sys.argv[1])
scale = float(sys.argv[2])
f = resample_factor(GLAS_MPP, GLAS_MPP / scale)
settings = InferenceSettings(tile=512, device="cpu", precision="fp32", instances=False)
P = dict(h=0.3, smooth=2.0, min_size=400)
def fill(lab):
    out = lab.copy()
    for i, sl in enumerate(ndi.find_objects(lab), 1):
        if sl is None:
            continue
        m = ndi.binary_fill_holes(lab[sl] == i)
        out[sl][m & (out[sl] == 0)] = i
    return out
rows = []
for name in names:
    rgb = read_array(glas / "images" / f"{name}.jpg")[..., :3]
    src = ResampledView(np.ascontiguousarray(rgb), f)
    cue = np.zeros((1,) + tuple(src.shape[:2]), np.float32)
    res = run_generator(segment_progressive(model, info, src, settings, name=name, cue_out=cue))
    fg = np.asarray(res.labels) > 0
    truth = to_label_image(read_array(glas / "masks" / f"{name}.png"))
    g = split_by_distance(fg, cue[0], **P)
    big = map_back(g, (0, rgb.shape[0]), (0, rgb.shape[1]), f)
    s = glas_scores(big, truth)
    s2 = glas_scores(map_back(fill(g), (0, rgb.shape[0]), (0, rgb.shape[1]), f), truth)
    holes = int((ndi.binary_fill_holes(fg) & ~fg).sum())
    rows.append(dict(name=name, grade=grade[name], n_pred=int(big.max()), n_true=int(len(np.unique(truth)) - 1),
                     f1=round(s["f1_object"], 3), dice=round(s["object_dice"], 3), hd=round(s["object_hd"], 1),
                     f1_fill=round(s2["f1_object"], 3), dice_fill=round(s2["object_dice"], 3), hole_px=holes))
    print(json.dumps(rows[-1]), flush=True)
for gr in ("benign", "malignant"):
    r = [x for x in rows if x["grade"] == gr]
    print(gr, {k: round(float(np.mean([x[k] for x in r])), 3) for k in ("f1", "dice", "hd", "f1_fill", "dice_fill")})
