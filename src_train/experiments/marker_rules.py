"""Which markers split a distance-map model's foreground best, on the 6 HELD-OUT MoNuSeg training images.

    python src_train/experiments/marker_rules.py --model runs/recipe/v2_long/best.safetensors \\
        --out docs/results/nuclei_v2/marker_rules_v2_long.json

The network runs once per image and scale (the images as they are and downsampled 2x, segmented as
given, nothing resampled), the way ``genselfdiff segment`` runs it; then every rule of the grid splits
the same maps with ``core.inference.instances.split_by_distance``:

- ``h-maxima``: domes at least ``h`` above their saddle (the shipped rule), after a Gaussian of ``smooth`` px;
- ``threshold``: connected cores where the map exceeds ``threshold`` (at least ``min_marker`` px).

Instances made at half scale are mapped back to the annotation's pixels (nearest neighbour) before
scoring. Writes every row (per-image means of AJI, PQ, object F1, and the split's CPU seconds per image)
and the best rule by held-out AJI at full scale among those that lose nothing at half scale.
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from instance_oracle import held_out_run, raw_maps  # noqa: E402
from recipe import VALIDATION, rescale_image, resize_instances  # noqa: E402

from napari_genselfdiff.core.inference.instances import split_by_distance  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics import instance_scores  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import to_label_image  # noqa: E402

RULES = (
    [{"h": h, "smooth": s} for h, s in itertools.product([0.05, 0.1, 0.15, 0.2, 0.3], [0.0, 1.0, 2.0])]
    + [{"threshold": t, "min_marker": m, "smooth": s}
       for t, m, s in itertools.product([0.3, 0.4, 0.5, 0.6, 0.7], [1, 10], [0.0, 1.0])]
)
SCALES = (1.0, 0.5)


def main(argv: list[str] | None = None) -> int:
    args, model, info, settings, folder = held_out_run(
        __doc__, argv, lambda p: p.add_argument("--min-size", type=int, default=30))
    maps = {}
    for stem in VALIDATION:
        rgb = read_array(folder / "images" / f"{stem}.tif")
        truth = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        for scale in SCALES:
            logits, cue = raw_maps(model, info, rescale_image(rgb, scale), settings, ())
            maps[stem, scale] = (logits.argmax(0) > 0, cue[0], truth)
        print("maps", stem, flush=True)
    rows = []
    for rule in RULES:
        row = {"rule": rule}
        for scale in SCALES:
            per, seconds = [], 0.0
            for stem in VALIDATION:
                fg, d, truth = maps[stem, scale]
                t = time.process_time()
                inst = split_by_distance(fg, d, min_size=max(1, round(args.min_size * scale * scale)), **rule)
                seconds += time.process_time() - t
                s = instance_scores(resize_instances(inst, truth.shape), truth)
                per.append([s["aji"], s["pq"], s["f1_object"]])
            aji, pq, f1o = np.mean(per, axis=0)
            row[f"x{scale:g}"] = {"aji": float(aji), "pq": float(pq), "f1_object": float(f1o),
                                 "cpu_seconds_per_image": seconds / len(VALIDATION)}
        rows.append(row)
        print(json.dumps(rule), " ".join(f"x{sc:g} AJI {row[f'x{sc:g}']['aji']:.4f} PQ {row[f'x{sc:g}']['pq']:.4f}"
                                         for sc in SCALES), flush=True)
    shipped = next(r for r in rows if r["rule"] == {"h": 0.1, "smooth": 1.0})
    fair = [r for r in rows if r["x0.5"]["aji"] >= shipped["x0.5"]["aji"]]
    best = max(fair, key=lambda r: r["x1"]["aji"])
    record = {"command": "python src_train/experiments/marker_rules.py " + shlex.join(argv or sys.argv[1:]),
              "model": str(args.model), "images": VALIDATION, "precision": args.precision, "min_size": args.min_size,
              "rule": "highest held-out AJI at full scale among rules that lose no AJI at half scale against "
                      "the shipped h-maxima (h 0.1, smooth 1)",
              "shipped": shipped, "best": best, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print("best", json.dumps(best))
    return 0


if __name__ == "__main__":
    sys.exit(main())
