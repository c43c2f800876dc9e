"""The real Aperio slide's stroma region (issue: "false nuclei on dark stroma"), nuclei of one or more models.

    python docs/figures/stroma_region.py --model napari_genselfdiff/models/default_nuclei.safetensors \
        --model src_train/checkpoints/nuclei_v1.safetensors --out docs/images/stroma_region.png

Segments level-0 pixels x 1250-1650, y 1150-1700 of ../shared/data/slides/CMU-1-Small-Region.svs (20x,
0.499 um/px) with ``segment --instances`` (the slide path: resampled to the model's resolution, nuclei
as QuPath GeoJSON in level-0 pixels), draws each model's GeoJSON outlines on the slide crop, side by
side, and prints each model's nucleus count and median nucleus area as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from napari_genselfdiff.core.inference import InferenceSettings  # noqa: E402
from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide  # noqa: E402
from napari_genselfdiff.core.io.slide import Slide  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402

SLIDE = ROOT.parent / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"
REGION = (1250, 1150, 400, 550)  # x, y, w, h in level-0 pixels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="a model file (repeat for side by side)")
    p.add_argument("--model-mpp", action="append", default=None,
                   help="the working resolution for the --model of the same place (um/px, or 'file')")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    working = args.model_mpp or ["file"] * len(args.model)
    if len(working) != len(args.model):
        p.error(f"give --model-mpp once per --model ({len(args.model)}), or not at all")
    if not SLIDE.is_file():
        print(f"error: {SLIDE} not found (the shared data folder is absent).", file=sys.stderr)
        return 2
    import torch
    from PIL import Image, ImageDraw

    torch.set_num_threads(2)
    x, y, w, h = REGION
    crop = np.asarray(Slide(SLIDE).read_region(x, y, w, h))[..., :3]
    panels = []
    for model_path, mpp in zip(args.model, working):
        model, info = load_model(model_path)
        model_mpp = None if mpp == "file" else float(mpp)
        with tempfile.TemporaryDirectory() as tmp:
            result = segment_slide(model, info, SLIDE, Path(tmp), SlideSettings(
                inference=InferenceSettings(precision="fp32"), instances=True, tissue=False, region=REGION,
                model_mpp=model_mpp))
            features = json.loads(result.geojson.read_text())["features"]
        panel = Image.fromarray(crop.copy())
        draw = ImageDraw.Draw(panel)
        areas = []
        for feature in features:
            geometry = feature["geometry"]
            polygons = geometry["coordinates"] if geometry["type"] == "MultiPolygon" else [geometry["coordinates"]]
            for polygon in polygons:
                draw.line([(px - x, py - y) for px, py in polygon[0]], fill=(255, 230, 0), width=1)
            areas.append(feature["properties"]["measurements"]["Area um^2"])
        draw.rectangle([0, 0, w - 1, 16], fill=(0, 0, 0))
        label = Path(model_path).parent.name if Path(model_path).name in ("best.safetensors", "last.safetensors") \
            else Path(model_path).stem
        at = f" at {model_mpp:g} um/px" if model_mpp else ""
        draw.text((4, 2), f"{label}{at}: {len(features)} nuclei", fill=(255, 255, 255))
        panels.append(panel)
        print(json.dumps({"model": str(model_path), "model_mpp": model_mpp, "output": info.output, "nuclei": len(features),
                          "median_area_um2": float(np.median(areas)) if areas else None}))
    sheet = Image.new("RGB", (w * len(panels) + 8 * (len(panels) - 1), h), (255, 255, 255))
    for i, panel in enumerate(panels):
        sheet.paste(panel, (i * (w + 8), 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
