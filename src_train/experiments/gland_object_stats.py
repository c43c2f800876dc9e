"""Which predicted glands match an annotated one on the 16 HELD-OUT GlaS training images (patients 3, 5, 6;
never testA / testB), and whether anything about a gland tells the unmatched ones apart: its distance-map
peak and mean, its area and its solidity.

    python src_train/experiments/gland_object_stats.py --model runs/glas/glas_half_dist_c2/best.safetensors \
        --scale 0.5 --instances-json docs/results/glas/glas_half_dist_c2_instances.json \
        --out docs/results/glas/glas_half_dist_c2_object_stats.json

A predicted gland matches when it covers more than half of the annotated gland it overlaps most (the GlaS
object F1's rule). Writes every gland's row and the 10/25/50/75/90th percentiles of each property for the
matched and the unmatched glands.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from glas import REPO, VALIDATION_PATIENTS, distance_glands, read_split  # noqa: E402

from napari_genselfdiff.core.io.atomic import atomic_path  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402

PROPERTIES = ("peak", "mean", "area", "solidity")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="a gland model with a distance-map output")
    p.add_argument("--scale", type=float, default=0.5, help="the run's glas.py --scale")
    p.add_argument("--instances-json", type=Path, required=True, help="tune_glands.py's record: its best setting")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    import torch
    from skimage.measure import regionprops

    torch.set_num_threads(1)
    model, info = load_model(args.model)
    params = json.loads(args.instances_json.read_text())["best"]["params"]
    glas = args.data / "glas"
    names = [n for n, patient in read_split(glas)["train"] if patient in VALIDATION_PATIENTS]
    rows = []
    for name in names:
        rgb = read_array(glas / "images" / f"{name}.jpg")[..., :3]
        at_model, glands, cue = distance_glands(model, info, rgb, params, args.scale)
        ids = np.arange(1, at_model.max() + 1)
        peaks = ndimage.maximum(ndimage.gaussian_filter(cue, params.get("smooth", 0.0)), at_model, ids)
        means = ndimage.mean(cue, at_model, ids)
        truth = to_label_image(read_array(glas / "masks" / f"{name}.png"))
        sizes = np.bincount(truth.ravel())
        for k in ids:
            mine = glands == k
            if not mine.any():  # dropped when mapped back
                continue
            hit, counts = np.unique(truth[mine], return_counts=True)
            counts, hit = counts[hit > 0], hit[hit > 0]
            matched = bool(counts.size and counts.max() > 0.5 * sizes[hit[counts.argmax()]])
            rows.append({"name": name, "peak": float(peaks[k - 1]), "mean": float(means[k - 1]),
                         "area": int(mine.sum()), "solidity": float(regionprops(mine.astype(np.uint8))[0].solidity),
                         "matched": matched})
    summary = {}
    for kind, want in (("matched", True), ("unmatched", False)):
        mine = [r for r in rows if r["matched"] == want]
        summary[kind] = {"n": len(mine), **{key: np.percentile([r[key] for r in mine], [10, 25, 50, 75, 90]).round(3).tolist()
                                            for key in PROPERTIES}} if mine else {"n": 0}
    record = {"model": str(args.model), "splitting": params, "validation_images": names, "percentiles": [10, 25, 50, 75, 90],
              "summary": summary, "glands": rows,
              "command": "python src_train/experiments/gland_object_stats.py " + shlex.join(argv or sys.argv[1:])}
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
