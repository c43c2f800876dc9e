"""What a gland model gets wrong on HELD-OUT GlaS training images (never testA / testB): for each image, the
annotated glands (green), the model's glands (red) and its gland distance map, side by side, half size.

    python docs/figures/gland_errors.py --model runs/glas/glas_half_dist_c2/best.safetensors --scale 0.5 \
        --instances-json docs/results/glas/glas_half_dist_c2_instances.json --names train_55 train_58 \
        --out docs/images/gland_errors_heldout.png

The image goes through the path ``tune_glands.py`` scores (resampled to the model's resolution, segmented,
split by the model's own distance map with the JSON's chosen setting, mapped back); prints each image's
annotated and predicted gland counts as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src_train" / "experiments"))

from glas import distance_glands  # noqa: E402

from napari_genselfdiff.core.io.atomic import atomic_path  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="a gland model with a distance-map output")
    p.add_argument("--scale", type=float, default=0.5, help="the run's glas.py --scale")
    p.add_argument("--instances-json", type=Path, required=True, help="tune_glands.py's record: its best setting")
    p.add_argument("--names", nargs="+", required=True, help="held-out GlaS training images (train_N)")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    import imageio.v3 as iio
    import torch
    from skimage.segmentation import find_boundaries

    torch.set_num_threads(1)
    model, info = load_model(args.model)
    if info.output != "distance":
        p.error(f"{args.model}: output {info.output!r}; this figure draws a distance-map model's glands")
    params = json.loads(args.instances_json.read_text())["best"]["params"]
    glas = args.data / "glas"
    rows = []
    for name in args.names:
        rgb = read_array(glas / "images" / f"{name}.jpg")[..., :3]
        _, glands, cue = distance_glands(model, info, rgb, params, args.scale)
        truth = to_label_image(read_array(glas / "masks" / f"{name}.png"))
        annotated, predicted = rgb.copy(), rgb.copy()
        annotated[find_boundaries(truth)] = (0, 200, 0)
        predicted[find_boundaries(glands)] = (230, 0, 0)
        up = np.kron(cue, np.ones((round(1 / args.scale),) * 2, np.float32))[: rgb.shape[0], : rgb.shape[1]]
        distance = np.zeros_like(rgb)
        distance[: up.shape[0], : up.shape[1], 0] = (np.clip(up, 0, 1) * 255).astype(np.uint8)
        rows.append(np.concatenate([annotated, predicted, distance], 1)[::2, ::2])
        print(json.dumps({"name": name, "annotated": int(len(np.unique(truth)) - 1),
                          "predicted": int(len(np.unique(glands)) - 1)}))
    width = max(r.shape[1] for r in rows)
    figure = np.concatenate([np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        iio.imwrite(tmp, figure, extension=".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
