"""Choose the nucleus-splitting parameters of a fine-tuned model on its TRAINING images (never the test set).

    python src_train/experiments/tune_instances.py --model runs/bundle/runs/n30_model_s0/last.safetensors \
        --out runs/bundle/instances.json

Segments the MoNuSeg training images that have instance masks (13 of the 30), then scores the
distance-transform watershed of core.inference.instances for a small grid of (h, min_distance) by mean
AJI against those instance masks, and writes the grid and the best setting as JSON. The defaults
(h 1.0, min_distance 8) were chosen on ground-truth masks; a network's masks are smoother and a
little fatter, so its best setting can differ. bundle_model.py --instances-json stores the choice in
the model file's post-processing, which the CLI and the plugin apply.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.allocator import keep_freed_memory  # noqa: E402
from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.inference.instances import label_instances  # noqa: E402
from napari_genselfdiff.core.io.atomic import atomic_path  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402

H_VALUES = (0.5, 1.0, 1.5, 2.0)
MIN_DISTANCES = (4.0, 6.0, 8.0, 10.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path("../shared/data/monuseg"))
    p.add_argument("--out", type=Path, required=True, help="JSON file for the grid and the choice")
    p.add_argument("--stems", nargs="+", default=None,
                   help="only these training images (e.g. the held-out validation images of recipe.py)")
    args = p.parse_args(argv)
    keep_freed_memory()
    masks = sorted((args.data / "train" / "instance_masks").glob("*.png"))
    if args.stems:
        masks = [m for m in masks if m.stem in set(args.stems)]
    if not masks:
        print(f"error: no instance masks under {args.data}/train/instance_masks.", file=sys.stderr)
        return 2
    model, info = load_model(args.model)
    foregrounds, truths = [], []
    for mask in masks:
        rgb = read_array(args.data / "train" / "images" / f"{mask.stem}.tif")[..., :3]
        foregrounds.append(np.asarray(segment(model, info, rgb, InferenceSettings(device="cpu", precision="fp32")).labels) > 0)
        truths.append(read_array(mask).astype(np.int32))
    grid = []
    for h, min_distance in itertools.product(H_VALUES, MIN_DISTANCES):
        ajis = [evaluate_pair(label_instances(fg, h=h, min_distance=min_distance), gt, instances=True)["aji"]
                for fg, gt in zip(foregrounds, truths)]
        grid.append({"h": h, "min_distance": min_distance, "mean_aji": float(np.mean(ajis))})
        print(f"h {h:.1f} min_distance {min_distance:4.1f}: mean AJI {grid[-1]['mean_aji']:.4f}", flush=True)
    best = max(grid, key=lambda g: g["mean_aji"])
    result = {"model": str(args.model), "images": [m.stem for m in masks], "grid": grid,
              "best": {"split_touching": True, "min_distance": best["min_distance"], "min_size": 30, "h": best["h"]},
              "best_mean_aji": best["mean_aji"]}
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    print(f"best: h {best['h']} min_distance {best['min_distance']} (mean AJI {best['mean_aji']:.4f} on "
          f"{len(masks)} training images) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
