"""What acting on an unconfident resolution estimate costs, on the MoNuSeg TRAINING images only.

``ESTIMATE_MIN_CONFIDENCE`` (core/inference/resolution.py) decides when an estimate is used instead of the
model's own resolution. It was chosen for the share of RIGHT estimates; this measures what each threshold does
to the segmentation: each training image shrunk 1x, 2x, 4x (40x, 20x, 10x; area mean; instance truth by the most
frequent id per block), nothing recorded, estimated (``estimate_mpp``), then segmented both at the estimate and at
the model's resolution (``segment_at_resolution``, instances, the model's splitting) and scored (AJI, PQ in the
image's own pixels). For each threshold t, a case scores what acting on its estimate gives when its confidence
is >= t, else what the model's resolution gives. One JSON line per case, then one per threshold.

    python benchmarks/estimate_threshold.py --model default --threads 2 > OUT.jsonl
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

from nucleus_size_reference import MONUSEG_MPP, shrink, shrink_labels, training_cases_arguments, training_masks_missing  # noqa: E402

THRESHOLDS = (0.0, 0.02, 0.1, 0.2, 0.3, 0.5, 0.7, 1.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    training_cases_arguments(parser)
    parser.add_argument("--model", default="default")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = parser.parse_args(argv)
    if training_masks_missing(args.data):
        return 2
    import torch

    from napari_genselfdiff.core.inference import InferenceSettings
    from napari_genselfdiff.core.inference.driver import load_segmentation_model
    from napari_genselfdiff.core.inference.resolution import assumed, estimate_mpp, segment_at_resolution
    from napari_genselfdiff.core.io.read import read_array
    from napari_genselfdiff.core.metrics import instance_scores
    from napari_genselfdiff.core.metrics.evaluation import to_label_image
    from napari_genselfdiff.core.progress import run_generator

    torch.set_num_threads(args.threads)
    network, info, _ = load_segmentation_model(args.model, "cpu")
    settings = InferenceSettings(device="cpu", precision=args.precision, instances=True)
    rows = []
    for path in sorted((args.data / "train" / "images").glob("*.tif"))[: args.limit]:
        image = read_array(path)[..., :3]
        truth = to_label_image(read_array(args.data / "train" / "instance_masks" / f"{path.stem}.png"))
        for k in (1, 2, 4):
            small, small_truth = shrink(image, k), shrink_labels(truth, k)
            t0 = time.perf_counter()
            est = run_generator(estimate_mpp(network, info, small, settings, name=path.stem))
            own = assumed(info, "benchmark")
            scored = {}
            for key, resolution in (("model", own), ("estimate", est.resolution if est.mpp is None else
                                                     type(own)(est.mpp, "estimated", "benchmark"))):
                if key == "estimate" and abs(resolution.mpp - own.mpp) < 1e-9:
                    scored[key] = scored["model"]
                    continue
                result, _ = run_generator(segment_at_resolution(network, info, small, settings, resolution))
                s = instance_scores(np.asarray(result.instances), small_truth)
                scored[key] = {"aji": float(s["aji"]), "pq": float(s["pq"])}
            row = {"image": path.stem, "scale": f"{40 // k}x", "true_mpp": MONUSEG_MPP * k,
                   "estimate": est.mpp, "confidence": est.confidence, "at_model": scored["model"],
                   "at_estimate": scored["estimate"], "seconds": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for t in THRESHOLDS:
        out = {"threshold": t}
        for scale in ("40x", "20x", "10x", "all"):
            sel = [r for r in rows if scale in ("all", r["scale"])]
            pick = [r["at_estimate"] if r["estimate"] is not None and r["confidence"] >= t else r["at_model"] for r in sel]
            out[scale] = {m: round(statistics.mean(p[m] for p in pick), 4) for m in ("aji", "pq")}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
