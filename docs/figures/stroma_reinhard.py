"""Diagnostic: the default model on the Aperio slide's stroma region as it is and after a Reinhard stain
normalisation (LAB mean/std of tissue matched to the 30 MoNuSeg training images)
counts and a side-by-side sheet.
Not part of the product.

    python docs/figures/stroma_reinhard.py   (writes runs/diag/stroma_reinhard.png)
"""
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
import torch
from PIL import Image, ImageDraw
from skimage import color
from skimage.segmentation import find_boundaries

torch.set_num_threads(1)
from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.resolution import resolve_and_segment
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.io.slide import Slide
from napari_genselfdiff.core.model_files import load_model
from napari_genselfdiff.core.progress import run_generator

SL = ROOT.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
x, y, w, h = 1250, 1150, 400, 550
crop = np.asarray(Slide(SL).read_region(x, y, w, h))[..., :3]
# reference: LAB stats of MoNuSeg training images (tissue pixels)
labs = []
for p in sorted(ROOT.parent / "shared" / "data" / "monuseg" / "train" / "images".glob("*.tif"))[:30]:
    lab = color.rgb2lab(read_array(p)[::4, ::4, :3])
    labs.append(lab.reshape(-1, 3))
ref = np.concatenate(labs)
rm, rs = ref.mean(0), ref.std(0)
def reinhard(img):
    lab = color.rgb2lab(img)
    m, s = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
    tissue = lab[..., 0] < 85
    m, s = lab[tissue].mean(0), lab[tissue].std(0)
    out = (lab - m) / s * rs + rm
    return (np.clip(color.lab2rgb(out), 0, 1) * 255).astype(np.uint8)
model, info = load_model(ROOT / "napari_genselfdiff" / "models" / "default_nuclei.safetensors")
st = InferenceSettings(precision="fp32", instances=True)
panels = []
for name, img in (("as is", crop), ("Reinhard", reinhard(crop))):
    res, _, _ = run_generator(resolve_and_segment(model, info, img, st, given=0.499))
    inst = np.asarray(res.instances)
    n = int(len(np.unique(inst)) - 1)
    pan = img.copy()
    pan[find_boundaries(inst)] = (255, 230, 0)
    im = Image.fromarray(pan)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 0, w, 16], fill=(0, 0, 0))
    d.text((4, 2), f"{name}: {n}", fill=(255, 255, 255))
    panels.append(im)
    print(name, n)
sheet = Image.new("RGB", (2 * w + 8, h), (255, 255, 255))
sheet.paste(panels[0], (0, 0))
sheet.paste(panels[1], (w + 8, 0))
(ROOT / "runs" / "diag").mkdir(parents=True, exist_ok=True)
sheet.save(ROOT / "runs" / "diag" / "stroma_reinhard.png")
