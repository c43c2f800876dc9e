"""Choose how an instance-aware model splits nuclei, on the 6 HELD-OUT training images (never the test set).

    python src_train/experiments/tune_splitting.py --model runs/recipe/ih_contour/last.safetensors \
        --out docs/results/recipe/ih_contour_splitting.json

Segments the held-out images of recipe.py once (labels and the model's cue), then scores each setting
of a small grid of its output kind's splitting parameters (core/inference/instances.py CUE_DEFAULTS)
by mean AJI and PQ, at the images' own scale and downsampled 2x, and writes every row and the best
setting (highest mean AJI over both scales) as JSON; bundle_model.py --instances-json stores it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipe import REPO, VALIDATION, rescale_image, resize_instances  # noqa: E402

from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.inference.instances import CUE_DEFAULTS, split_nuclei  # noqa: E402
from napari_genselfdiff.core.io.atomic import atomic_path  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402

GRIDS = {
    "contour": {"interior_threshold": (0.3, 0.4, 0.5, 0.6), "min_marker": (4, 8, 16), "min_size": (20, 30)},
    "distance": {"h": (0.05, 0.1, 0.15, 0.2), "smooth": (0.0, 1.0, 2.0), "min_size": (8, 20, 30)},
    "hover": {"energy_threshold": (0.3, 0.4, 0.5, 0.6), "smooth": (1.0, 2.0), "min_marker": (3, 10), "min_size": (8, 30)},
    "classes": {"h": (0.5, 1.0), "min_distance": (6.0, 8.0, 10.0), "min_size": (20, 30)},
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="of the network's pass (auto: what genselfdiff segment uses on this machine: bf16 on a "
                        "CPU with native bf16); the splitting is chosen for the maps users get")
    args = p.parse_args(argv)
    import torch

    try:
        from napari_genselfdiff.core.metrics import instance_scores
    except ImportError:  # before PQ existed: AJI only
        def instance_scores(pred, gt):
            return {"aji": evaluate_pair(pred, gt, instances=True)["aji"]}

    torch.set_num_threads(1)
    model, info = load_model(args.model)
    folder = args.data / "monuseg" / "train"
    cases = []  # (scale, foreground, cue, gt instances)
    for stem in VALIDATION:
        rgb = read_array(folder / "images" / f"{stem}.tif")
        gt = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        for s in args.scales:
            r = segment(model, info, rescale_image(rgb, s), InferenceSettings(tile=512, precision=args.precision, instances=True))
            cases.append((s, np.asarray(r.labels) > 0, r.cue, gt))
    grid = GRIDS[info.output]
    rows = []
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid.keys(), values))
        probe = type("Info", (), {"output": info.output, "postprocess": {"instances": params}})()
        start = time.process_time()
        per_scale: dict[float, list[dict]] = {}
        for s, fg, cue, gt in cases:
            inst = resize_instances(split_nuclei(fg, cue, probe), gt.shape)
            per_scale.setdefault(s, []).append(instance_scores(inst, gt))
        row = {"params": params, "cpu_seconds_per_image": (time.process_time() - start) / len(cases)}
        for s, scores in per_scale.items():
            for key in ("aji", "pq", "f1_object"):
                if key in scores[0]:
                    row[f"{key}_x{s:g}"] = float(np.mean([sc[key] for sc in scores]))
        row["aji_mean"] = float(np.mean([row[f"aji_x{s:g}"] for s in per_scale]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["aji_mean"])
    result = {"model": str(args.model), "output": info.output, "validation_images": VALIDATION,
              "scales": args.scales, "defaults": CUE_DEFAULTS.get(info.output), "rows": rows, "best": best,
              "command": "python src_train/experiments/tune_splitting.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    with atomic_path(args.out, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1))
    print("best:", json.dumps(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
