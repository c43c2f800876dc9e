"""Resolution everywhere, measured: MoNuSeg TEST images at 40x, 20x and 10x with nothing recorded.

    python benchmarks/resolution_monuseg.py default --threads 1 > docs/results/resolution_monuseg.jsonl

Each of the 14 test images (1000x1000, 0.25 um/px) is shrunk 1x, 2x and 4x by area averaging (40x,
20x, 10x: 0.25, 0.5, 1.0 um/px; ``nucleus_size_reference.shrink``) and its instance truth by the
most frequent id of each block. The array alone is given to the core's one resolution path
(``core/inference/resolution.py``, what ``genselfdiff segment`` and the Segment panel run), so no
resolution is recorded, in three ways:

- ``as_given``: the model's own resolution assumed (what happened before: no resampling);
- ``true``: the true resolution given (``genselfdiff segment --mpp 0.5`` on the 20x set);
- ``estimated``: nothing given, so estimated from the nuclei (``genselfdiff segment`` with no option).

Scored in the image's own pixels against the shrunk truth: nucleus F1 (Dice) and AJI per image,
their means per scale; the estimate's relative error; the estimate's time against the segmentation's
(at the true resolution). One JSON line per image and scale, then one summary line per scale. A run
whose result equals another's (same resampling factor) is not recomputed. Nothing here was tuned on
these images (the estimator was tuned on the training images: ``nucleus_size_reference.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from nucleus_size_reference import MONUSEG_MPP, shrink, shrink_labels  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="default")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "monuseg")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--first", type=int, default=0, help="skip the first N test images (to split a run)")
    parser.add_argument("--summarize", type=Path, nargs="+", default=None, metavar="JSONL",
                        help="only print the summaries of the image lines in these files (split runs joined)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.summarize:
        rows = [json.loads(line) for f in args.summarize for line in f.read_text().splitlines()
                if line.startswith("{") and '"image"' in line]
        summarize(rows, args.model)
        return 0
    if not (args.data / "test" / "images").is_dir():
        print(f"no MoNuSeg test images under {args.data}", file=sys.stderr)
        return 2

    import torch

    from napari_genselfdiff.core.inference import InferenceSettings
    from napari_genselfdiff.core.inference.driver import load_segmentation_model
    from napari_genselfdiff.core.inference.resolution import (
        Resolution,
        assumed,
        estimate_mpp,
        resample_factor,
        segment_at_resolution,
    )
    from napari_genselfdiff.core.io.read import read_array
    from napari_genselfdiff.core.metrics.aji import aggregated_jaccard_index
    from napari_genselfdiff.core.metrics.pixel import dice
    from napari_genselfdiff.core.progress import run_generator

    torch.set_num_threads(args.threads)
    network, info, _ = load_segmentation_model(args.model, "cpu")
    settings = InferenceSettings(device="cpu", precision="fp32", instances=True)
    started_all = time.perf_counter()
    rows = []
    for path in sorted((args.data / "test" / "images").glob("*.tif"))[args.first:][: args.limit]:
        image = read_array(path)[..., :3]
        truth = read_array(args.data / "test" / "instance_masks" / f"{path.stem}.png").astype(np.int64)
        for k in (1, 2, 4):
            small, gt = shrink(image, k), shrink_labels(truth, k)
            true_mpp = MONUSEG_MPP * k
            row = {"image": path.stem, "scale": f"{40 // k}x", "size": list(small.shape[:2]), "true_mpp": true_mpp}
            t = time.perf_counter()
            est = run_generator(estimate_mpp(network, info, small, settings, name=path.stem))
            row["estimate_seconds"] = round(time.perf_counter() - t, 3)
            row["estimate"] = est.mpp
            row["estimate_confidence"] = est.confidence
            row["estimate_used"] = est.resolution.source
            row["estimate_error"] = round(abs(est.mpp / true_mpp - 1), 4) if est.mpp else None
            row["nucleus_mpp"] = round(est.nucleus_mpp, 4) if est.nucleus_mpp else None
            done: dict[float, dict] = {}
            ways = (("as_given", assumed(info)), ("true", Resolution(true_mpp, "given", "true")),
                    ("estimated", est.resolution))
            for way, resolution in ways:
                f = round(resample_factor(resolution.mpp, 0.25), 6)
                if f not in done:
                    t = time.perf_counter()
                    result, _ = run_generator(segment_at_resolution(network, info, small, settings, resolution,
                                                                    name=path.stem))
                    seconds = time.perf_counter() - t
                    assert result.labels.shape == gt.shape, (result.labels.shape, gt.shape)
                    done[f] = {"f1": round(dice(result.labels > 0, gt > 0), 4),
                               "aji": round(aggregated_jaccard_index(result.instances, gt), 4),
                               "seconds": round(seconds, 3)}
                row[f"{way}_mpp"] = round(resolution.mpp, 4)
                row.update({f"{way}_{key}": value for key, value in done[f].items()})
            row["estimate_cost"] = round(row["estimate_seconds"] / row["true_seconds"], 3)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summarize(rows, args.model)
    print(json.dumps({"total_seconds": round(time.perf_counter() - started_all, 1), "threads": args.threads}))
    return 0


def summarize(rows: list[dict], model: str) -> None:
    """One summary line per scale: mean F1 and AJI of each way, the estimate's errors and cost."""
    for scale in ("40x", "20x", "10x"):
        sel = [r for r in rows if r["scale"] == scale]
        if not sel:
            continue
        errors = [r["estimate_error"] if r["estimate_error"] is not None else 1.0 for r in sel]
        summary = {"summary": scale, "images": len(sel), "model": model}
        for way in ("as_given", "true", "estimated"):
            summary[f"{way}_f1"] = round(statistics.mean(r[f"{way}_f1"] for r in sel), 4)
            summary[f"{way}_aji"] = round(statistics.mean(r[f"{way}_aji"] for r in sel), 4)
        summary.update({
            "estimate_median_error": round(statistics.median(errors), 4),
            "estimate_mean_error": round(statistics.mean(errors), 4),
            "estimate_within_15pct": f"{sum(e <= 0.15 for e in errors)}/{len(sel)}",
            "estimate_used": f"{sum(r['estimate_used'] == 'estimated' for r in sel)}/{len(sel)}",
            "estimate_seconds": round(statistics.mean(r["estimate_seconds"] for r in sel), 3),
            "segment_seconds_true": round(statistics.mean(r["true_seconds"] for r in sel), 3),
            "estimate_cost": round(sum(r["estimate_seconds"] for r in sel) / sum(r["true_seconds"] for r in sel), 3),
        })
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
