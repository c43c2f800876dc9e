"""Side-by-side figure for docs/results.md: image | ground truth | prediction, on a MoNuSeg test image.

    python src_train/experiments/figure.py --model napari_genselfdiff/models/default_nuclei.safetensors \
        --image TCGA-2Z-A9J9-01A-01-TS1 --out docs/images/results_example.png

Outlines: ground-truth nucleus instances (green) and predicted instances (model colour), drawn inside
each object; a 400 x 400 crop of the whole-image prediction so nuclei are visible at page size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.io.atomic import atomic_path  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.io.write import render_overlay  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data", type=Path, default=Path("../shared/data/monuseg"))
    p.add_argument("--image", default="TCGA-2Z-A9J9-01A-01-TS1")
    p.add_argument("--crop", type=int, nargs=3, default=[300, 300, 400], metavar=("Y", "X", "SIZE"))
    p.add_argument("--out", type=Path, default=Path("docs/images/results_example.png"))
    args = p.parse_args(argv)
    import imageio.v3 as iio

    model, info = load_model(args.model)
    rgb = read_array(args.data / "test" / "images" / f"{args.image}.tif")[..., :3]
    gt = read_array(args.data / "test" / "instance_masks" / f"{args.image}.png")
    result = segment(model, info, rgb, InferenceSettings(tile=512, instances=True))
    y, x, s = args.crop
    window = (slice(y, y + s), slice(x, x + s))
    crop = rgb[window]
    gt_panel = render_overlay(crop, (gt[window] > 0).astype(np.uint8), [(0, 0, 0), (0, 230, 0)],
                              instances=gt[window], thickness=2)
    pred_panel = render_overlay(crop, np.asarray(result.labels)[window], info.classes,
                                instances=result.instances[window], thickness=2)
    gap = np.full((s, 8, 3), 255, np.uint8)
    figure = np.concatenate([crop, gap, gt_panel, gap, pred_panel], axis=1)
    with atomic_path(args.out) as tmp:
        iio.imwrite(tmp, figure, extension=".png")
    print(f"wrote {args.out}: image | ground truth (green) | prediction")
    return 0


if __name__ == "__main__":
    sys.exit(main())
