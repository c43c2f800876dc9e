"""The classical floor on MoNuSeg: no learning at all.

Hematoxylin channel by colour deconvolution (Ruifrok & Johnston; skimage.color.rgb2hed), Otsu
threshold, small-object/hole clean-up, then the same distance-transform watershed the learned models
use for instances (core.inference.instances.label_instances). Scored whole-image with core.metrics.evaluation,
exactly like the learned models.

    python src_train/experiments/classical_baseline.py --data ../shared/data/monuseg --out runs/classical
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import color, filters, morphology

from napari_genselfdiff.core.inference.instances import label_instances
from napari_genselfdiff.core.io.atomic import write_text_atomic
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, format_table, summarize


def classical_nuclei(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 H&E -> (H, W) bool nucleus mask."""
    hema = color.rgb2hed(rgb[..., :3])[..., 0]
    hema = filters.gaussian(hema, sigma=1.0)
    mask = hema > filters.threshold_otsu(hema)
    mask = morphology.remove_small_objects(mask, 30)
    return ndimage.binary_fill_holes(mask)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/monuseg"))
    parser.add_argument("--out", type=Path, default=Path("runs/classical"))
    args = parser.parse_args(argv)
    split = json.loads((args.data / "split.json").read_text())
    per_image, start = {}, time.perf_counter()
    for stem in split["test"]:
        rgb = read_array(args.data / "test" / "images" / f"{stem}.tif")
        gt = read_array(args.data / "test" / "instance_masks" / f"{stem}.png")
        instances = label_instances(classical_nuclei(rgb))
        per_image[stem] = evaluate_pair(instances, gt, instances=True)
    result = summarize(per_image)
    result["method"] = "hematoxylin deconvolution + Otsu + distance-transform watershed"
    result["seconds"] = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "classical_test.json", json.dumps(result, indent=2))
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
