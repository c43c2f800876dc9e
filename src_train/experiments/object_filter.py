"""Would dropping doubtful nuclei help? Spurious nuclei (predictions that touch no annotated nucleus) are the largest
error class on the held-out images (instance_errors.py); this measures, on the 6 held-out training images (never the
test images), at their own scale and downsampled 2x, what each object-level rule does to AJI / PQ / F1:
drop a predicted nucleus whose mean p(nucleus) is below ``min_prob``, whose distance-map peak is below ``min_peak``,
or whose area is below ``min_size`` (model pixels). Also prints how spurious and matched nuclei differ in those.

    python src_train/experiments/object_filter.py --model runs/recipe/w_control/best.safetensors --out OUT.json
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.inference.instances import split_nuclei, splitting_parameters  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import to_label_image  # noqa: E402
from src_train.experiments.instance_oracle import held_out_run, raw_maps, scores  # noqa: E402
from src_train.experiments.recipe import VALIDATION, rescale_image, resize_instances  # noqa: E402

MIN_PROB = (0.0, 0.6, 0.7, 0.8)
MIN_PEAK = (0.0, 0.2, 0.35, 0.5)
MIN_SIZE = (None, 50, 80)


def object_stats(inst: np.ndarray, prob: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per object id 1..n: mean p(nucleus), peak of the distance map, area."""
    n = int(inst.max())
    idx = np.arange(1, n + 1)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return (np.asarray(ndimage.mean(prob, inst, idx)), np.asarray(ndimage.maximum(dist, inst, idx)),
            np.bincount(inst.ravel(), minlength=n + 1)[1:])


def kept(inst: np.ndarray, stats, min_prob: float, min_peak: float, min_size: int | None) -> np.ndarray:
    mean_p, peak, area = stats
    keep = (mean_p >= min_prob) & (peak >= min_peak) & (area >= (min_size or 0))
    lut = np.concatenate([[0], np.where(keep, np.arange(1, len(keep) + 1), 0)])
    return lut[inst]


def main(argv: list[str] | None = None) -> int:
    args, model, info, settings, folder = held_out_run(__doc__, argv)
    params = splitting_parameters(info)
    grid = list(itertools.product(MIN_PROB, MIN_PEAK, MIN_SIZE))
    rows = {s: {g: [] for g in grid} for s in (1.0, 0.5)}
    spurious, matched = [], []
    for stem in VALIDATION:
        rgb0 = read_array(folder / "images" / f"{stem}.tif")
        truth = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        for scale in (1.0, 0.5):
            rgb = rescale_image(rgb0, scale)
            logits, cue = raw_maps(model, info, rgb, settings, ())
            e = np.exp(logits - logits.max(0))
            prob = e[1:].sum(0) / e.sum(0)
            fg = logits.argmax(0) > 0
            inst = split_nuclei(fg, cue, info)
            stats = object_stats(inst, prob, cue[0])
            if scale == 1.0:
                for k in range(1, int(inst.max()) + 1):
                    hit = truth[inst == k]
                    (matched if (hit > 0).any() else spurious).append([stats[0][k - 1], stats[1][k - 1], stats[2][k - 1]])
            for g in grid:
                pred = resize_instances(kept(inst, stats, *g), rgb0.shape[:2])
                rows[scale][g].append(scores(pred > 0, pred, truth))
        print(stem, "done", flush=True)
    sp, ma = np.array(spurious), np.array(matched)
    describe = {name: {"count": len(a), "mean_p_median": float(np.median(a[:, 0])), "peak_median": float(np.median(a[:, 1])),
                       "area_median": float(np.median(a[:, 2]))} for name, a in (("spurious", sp), ("touching a true nucleus", ma))}
    table = []
    for g in grid:
        row = {"min_prob": g[0], "min_peak": g[1], "min_size": g[2] or params.get("min_size")}
        for scale in (1.0, 0.5):
            for k in ("f1", "aji", "pq"):
                row[f"{k}" if scale == 1.0 else f"{k}_x0.5"] = float(np.mean([r[k] for r in rows[scale][g]]))
        table.append(row)
    table.sort(key=lambda r: -(r["aji"] + r["aji_x0.5"]))
    record = {"command": "python src_train/experiments/object_filter.py " + shlex.join(argv or sys.argv[1:]),
              "model": str(args.model), "precision": args.precision, "images": VALIDATION, "splitting": params,
              "objects": describe, "table": table}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(json.dumps(describe, indent=1))
    base = next(r for r in table if r["min_prob"] == 0 and r["min_peak"] == 0 and r["min_size"] == params.get("min_size"))
    for r in [base] + table[:8]:
        print(" ".join(f"{k} {v}" if not isinstance(v, float) else f"{k} {v:.4f}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
