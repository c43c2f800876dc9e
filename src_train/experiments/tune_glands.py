"""Choose how the gland model turns its gland mask into glands, on the 16 HELD-OUT GlaS training images
(patients 3, 5, 6; never testA / testB).

    python src_train/experiments/tune_glands.py --model runs/glas/<run>/best.safetensors --scale 0.5 \\
        --out docs/results/glas/<run>_instances.json

Segments each held-out image once the way ``genselfdiff segment --model glands`` does (the image,
0.62 um/px, resampled to the model's resolution), then for each setting of a small grid splits the
model-resolution gland mask into glands (``core.inference.instances.label_instances``: connected
components, or a distance-transform watershed that splits touching glands; glands under ``min_size``
model pixels dropped), maps the glands back to the image's pixels (``resolution.map_back``, as the
product does) and scores them with the GlaS object metrics (object F1, object Dice, object Hausdorff)
against the masks' components. A model with its own cue is split by it instead: a distance map at its
h-maxima (DISTANCE_GRID) or, with ``--cores``, at its thresholded cores (DISTANCE_CORE_GRID); a contour output
from the cores of its interior (CONTOUR_GRID). Writes every row and the best setting (highest mean of object F1
and object Dice) as JSON; ``bundle_glands.py --instances-json`` stores it in the model file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from glas import REPO, VALIDATION_PATIENTS, read_split, segment_held_out  # noqa: E402

from napari_genselfdiff.core.inference.instances import label_instances, split_by_contour, split_by_distance  # noqa: E402
from napari_genselfdiff.core.inference.resolution import map_back  # noqa: E402
from napari_genselfdiff.core.io.atomic import atomic_path  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics import glas_scores  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402

#: The grid, in the model's pixels (at 1.24 um/px a gland is about 20-200 px across).
#: (glas_half_nuclei_init_instances.json: a first grid of min_size 12-200, h 2-4, min_distance 10-20 peaked
#: at its edges, min_size 200 and h 4; on the 1500-step model, glas_half_long_instances_grid2.json, a
#: second grid up to min_size 800 and h 12 peaked at its edge again, so the grid reaches further.)
GRID = {
    "split_touching": [False, True],
    "min_size": [50, 100, 200, 400, 800, 1200, 1600],
    "h": [4.0, 8.0, 12.0, 16.0, 24.0],
    "min_distance": [20.0, 40.0],
}


#: The grid of a distance-map output (split_by_distance: h-maxima of the predicted map, which is
#: normalised per gland, so h is a fraction of a gland's depth; min_size in model pixels). (min_size up to
#: 800 until the third round of candidates, two of which peaked at 800: *_instances_wide.json reach 1600.)
DISTANCE_GRID = {
    "h": [0.05, 0.1, 0.15, 0.2, 0.3, 0.4],
    "smooth": [1.0, 2.0, 4.0],
    "min_size": [50, 100, 200, 400, 800, 1200, 1600],
}


#: The distance map's other marker rule (split_by_distance with ``threshold``): the connected cores where the
#: map exceeds a fixed fraction of each gland's depth, at least min_marker pixels. An irregular gland keeps
#: one core as long as its waist stays above the cut, where h-maxima would give each bulge its own marker.
DISTANCE_CORE_GRID = {
    "threshold": [0.2, 0.3, 0.4, 0.5, 0.6],
    "min_marker": [10, 50, 100],
    "smooth": [1.0, 2.0],
    "min_size": [100, 200, 400, 800],
}

#: The grid of a contour output (split_by_contour: cores of p(interior) flooded over the gland mask).
#: (glas_half_contour_instances_grid1.json: a first grid of threshold 0.3-0.7, min_marker 10-100, min_size
#: 50-800 peaked at its edge in all three; glas_half_contour_instances_grid2.json, threshold 0.5-0.9, peaked
#: at 0.9: so the grid reaches further.)
CONTOUR_GRID = {
    "interior_threshold": [0.6, 0.7, 0.8, 0.9, 0.95, 0.98],
    "min_marker": [50, 100, 200, 400],
    "min_size": [400, 800, 1200, 1600],
}


def product(grid: dict) -> list[dict]:
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def settings_grid() -> list[dict]:
    rows = []
    for split, min_size in itertools.product(GRID["split_touching"], GRID["min_size"]):
        if not split:
            rows.append({"split_touching": False, "min_size": min_size, "min_distance": 0.0, "h": 0.0})
            continue
        for h, min_distance in itertools.product(GRID["h"], GRID["min_distance"]):
            rows.append({"split_touching": True, "min_size": min_size, "min_distance": min_distance, "h": h})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--scale", type=float, default=1.0, help="the run's glas.py --scale (model at 0.62 / scale um/px)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--flips", action="store_true",
                   help="average each tile over its mirror images (genselfdiff segment --flips)")
    p.add_argument("--cores", action="store_true",
                   help="a distance-map model: markers from the map's thresholded cores (DISTANCE_CORE_GRID) "
                        "instead of its h-maxima")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    glas = args.data / "glas"
    names = [n for n, patient in read_split(glas)["train"] if patient in VALIDATION_PATIENTS]
    model, info = load_model(args.model)
    own_split = info.output in ("distance", "contour")  # split by the model's own cue, else by the mask's
    if args.cores and info.output != "distance":
        p.error(f"--cores chooses a distance map's markers; this model's output is {info.output!r}")
    grid = (CONTOUR_GRID if info.output == "contour" else DISTANCE_CORE_GRID if args.cores else DISTANCE_GRID
            ) if own_split else GRID
    splitter = split_by_contour if info.output == "contour" else split_by_distance
    masks, truths, cues = {}, {}, {}
    start = time.perf_counter()
    for name in names:
        rgb = read_array(glas / "images" / f"{name}.jpg")[..., :3]
        foreground, cues[name], f = segment_held_out(model, info, rgb, args.scale, cue=own_split, flips=args.flips)
        masks[name] = (foreground, rgb.shape[:2])
        truths[name] = to_label_image(read_array(glas / "masks" / f"{name}.png"))
    segment_seconds = time.perf_counter() - start
    rows = []
    for params in product(grid) if own_split else settings_grid():
        per_image = {}
        t = time.perf_counter()
        for name in names:
            fg, (height, width) = masks[name]
            glands = (splitter(fg, cues[name], **params) if own_split
                      else label_instances(fg, **params))
            if f != 1.0:
                glands = map_back(glands, (0, height), (0, width), f)
            per_image[name] = glas_scores(glands, truths[name])
        mean = {k: float(np.mean([s[k] for s in per_image.values()])) for k in ("f1_object", "object_dice", "object_hd")}
        row = {"params": params, **mean, "selection": (mean["f1_object"] + mean["object_dice"]) / 2,
               "cpu_seconds_per_image": (time.perf_counter() - t) / len(names)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    best = max(rows, key=lambda r: r["selection"])
    record = {"model": str(args.model), "scale": args.scale, "flips": args.flips, "validation_images": names,
              "grid": grid, "output": info.output,
              "segment_seconds": segment_seconds, "rows": rows, "best": best,
              "command": "python src_train/experiments/tune_glands.py " + shlex.join(argv or sys.argv[1:])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=1))
    print(json.dumps({"best": best}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
