"""The resolution estimator's reference and its tuning, on the MoNuSeg TRAINING images only.

    python benchmarks/nucleus_size_reference.py                      # the constant, from the masks
    python benchmarks/nucleus_size_reference.py --probes default     # + the estimator on the images

1. From ``train/instance_masks`` (30 images, 0.25 um/px): each image's median equivalent nucleus
   diameter, and their median: ``TRAINING_NUCLEUS_DIAMETER_UM`` in
   ``core/inference/resolution.py`` (printed as ``reference``; the test images are never read).
2. With ``--probes MODEL``: each training image shrunk 1x, 2x, 4x (40x, 20x, 10x; area mean) is
   given to ``estimate_mpp`` as it is, nothing recorded: one JSON line per image and scale with the
   probes (candidate, whole nuclei, median diameter, implied resolution), the estimate and the
   resolution chosen, then a summary per scale (median and mean |error|, share within 15 %, share
   used). This is what the candidates, probe size and thresholds of ``estimate_mpp`` were chosen on
   (for the thresholds, all three probes of every training case were also recorded and the rules
   compared offline: the rule in resolution.py gets 74 of the 90 cases right, 67 without the
   confirmation by the next candidate and the fallback to the coarsest).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MONUSEG_MPP = 0.25


def shrink(image: np.ndarray, k: int) -> np.ndarray:
    """Area-mean downsampling by an integer ``k`` (what a k-times coarser scan roughly records)."""
    if k == 1:
        return image
    h, w = image.shape[0] // k * k, image.shape[1] // k * k
    small = image[:h, :w, :3].reshape(h // k, k, w // k, k, 3).astype(np.float32).mean(axis=(1, 3))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def shrink_labels(labels: np.ndarray, k: int) -> np.ndarray:
    """Instance truth at 1/k: each k x k block takes its most frequent id (background included)."""
    if k == 1:
        return labels
    h, w = labels.shape[0] // k * k, labels.shape[1] // k * k
    blocks = labels[:h, :w].reshape(h // k, k, w // k, k).transpose(0, 2, 1, 3).reshape(h // k, w // k, k * k)
    from napari_genselfdiff.core.inference.resolution import _mode

    return _mode(np.moveaxis(blocks, -1, 0))


def reference(data: Path) -> dict:
    from napari_genselfdiff.core.inference.resolution import whole_nucleus_diameters  # noqa: F401
    from napari_genselfdiff.core.io.read import read_array

    per_image = {}
    for path in sorted((data / "train" / "instance_masks").glob("*.png")):
        inst = read_array(path).astype(np.int64)
        areas = np.bincount(inst.ravel())[1:]
        d = np.sqrt(4.0 * areas[areas > 0] / math.pi)
        per_image[path.stem] = float(np.median(d))
    values = list(per_image.values())
    med_px = statistics.median(values)
    return {"reference": True, "images": len(values), "median_diameter_px": round(med_px, 3),
            "mpp": MONUSEG_MPP, "median_diameter_um": round(med_px * MONUSEG_MPP, 4),
            "per_image_px_min": round(min(values), 2), "per_image_px_max": round(max(values), 2)}


def training_cases_arguments(parser: argparse.ArgumentParser) -> None:
    """--data (the MoNuSeg folder), --limit (first N training images), --threads: the options of the
    benchmarks that run the estimator on the training images (this one, estimate_threshold.py)."""
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "monuseg")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)


def training_masks_missing(data: Path) -> bool:
    """True (and says so) when ``data`` holds no MoNuSeg training instance masks."""
    if (data / "train" / "instance_masks").is_dir():
        return False
    print(f"no MoNuSeg training masks under {data}", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training_cases_arguments(parser)
    parser.add_argument("--probes", metavar="MODEL", default=None, help="also run the estimator with this model")
    args = parser.parse_args(argv)
    if training_masks_missing(args.data):
        return 2
    print(json.dumps(reference(args.data)), flush=True)
    if not args.probes:
        return 0
    import torch

    from napari_genselfdiff.core.inference import InferenceSettings
    from napari_genselfdiff.core.inference.driver import load_segmentation_model
    from napari_genselfdiff.core.inference.resolution import estimate_mpp
    from napari_genselfdiff.core.io.read import read_array
    from napari_genselfdiff.core.progress import run_generator

    torch.set_num_threads(args.threads)
    network, info, _ = load_segmentation_model(args.probes, "cpu")
    settings = InferenceSettings(device="cpu", precision="fp32")
    rows = []
    for path in sorted((args.data / "train" / "images").glob("*.tif"))[: args.limit]:
        image = read_array(path)[..., :3]
        for k in (1, 2, 4):
            true = MONUSEG_MPP * k
            t = time.perf_counter()
            est = run_generator(estimate_mpp(network, info, shrink(image, k), settings, name=path.stem))
            row = {"image": path.stem, "scale": f"{40 // k}x", "true_mpp": true,
                   "estimate": round(est.mpp, 4) if est.mpp else None, "confidence": est.confidence,
                   "nucleus_mpp": round(est.nucleus_mpp, 4) if est.nucleus_mpp else None,
                   "used": est.resolution.source, "mpp_used": round(est.resolution.mpp, 4),
                   "seconds": round(time.perf_counter() - t, 2),
                   "probes": [[p.candidate, p.nuclei, round(p.diameter_px or 0, 2), round(p.implied or 0, 4)]
                              for p in est.probes]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    for scale in ("40x", "20x", "10x"):
        sel = [r for r in rows if r["scale"] == scale]
        errs = [abs(r["estimate"] / r["true_mpp"] - 1) if r["estimate"] else 1.0 for r in sel]
        used = [abs(r["mpp_used"] / r["true_mpp"] - 1) for r in sel]
        print(json.dumps({"summary": scale, "images": len(sel), "median_error": round(statistics.median(errs), 4),
                          "mean_error": round(statistics.mean(errs), 4),
                          "within_15pct": round(sum(e <= 0.15 for e in errs) / len(errs), 3),
                          "used_estimate": sum(r["used"] == "estimated" for r in sel),
                          "used_within_15pct": round(sum(e <= 0.15 for e in used) / len(used), 3),
                          "seconds": round(statistics.mean(r["seconds"] for r in sel), 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
