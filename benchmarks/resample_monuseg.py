"""Does resampling to the model's resolution help? MoNuSeg test images downsampled 2x (a 20x scan).

    python benchmarks/resample_monuseg.py MODEL.safetensors [--data ../shared/data/monuseg] [--limit N]

Each MoNuSeg test image (1000x1000 at about 0.25 um/px, 40x) is shrunk 2x by area averaging to
500x500 at 0.5 um/px, and its instance truth by taking every other pixel. Then it is segmented:

- ``direct``: as it is, at 0.5 um/px, by a model trained at 0.25 um/px (what happens without
  resolution handling), nuclei split with the default watershed settings;
- ``resampled``: as slide segmentation does it (``core/inference/slide.py``): read through
  ``ResampledView`` at 2x (bilinear) so the model sees 0.25 um/px, nuclei split at that resolution,
  then labels and nuclei mapped back to the 500x500 pixels by nearest neighbour.

Both are scored against the downsampled truth: pixel F1 (Dice) of the nucleus class and AJI of the
instances. One JSON line per image and a summary line (means) on stdout.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "monuseg")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    import torch

    from napari_genselfdiff.core.inference import InferenceSettings, segment
    from napari_genselfdiff.core.inference.instances import label_instances
    from napari_genselfdiff.core.inference.slide import ResampledView
    from napari_genselfdiff.core.io.read import read_array
    from napari_genselfdiff.core.metrics.aji import aggregated_jaccard_index
    from napari_genselfdiff.core.metrics.pixel import dice
    from napari_genselfdiff.core.model_files import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    network, info = load_model(args.model)
    settings = InferenceSettings(device="cpu", precision="fp32")
    params = dict((info.postprocess or {}).get("instances") or {})
    images = sorted((args.data / "test" / "images").glob("*.tif"))[: args.limit]
    rows = []
    for path in images:
        image = read_array(path)[..., :3]
        truth = read_array(args.data / "test" / "instance_masks" / f"{path.stem}.png")
        h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
        small = image[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).astype(np.float32).mean(axis=(1, 3))
        small = np.clip(np.rint(small), 0, 255).astype(np.uint8)
        truth_small = truth[:h:2, :w:2]
        row = {"image": path.stem, "size": list(small.shape[:2])}
        t = time.perf_counter()
        direct = segment(network, info, small, settings).labels
        row["direct_seconds"] = round(time.perf_counter() - t, 1)
        direct_inst = label_instances(direct > 0, **params)
        t = time.perf_counter()
        up = ResampledView(small, 2.0)
        fine = segment(network, info, up, settings).labels
        row["resampled_seconds"] = round(time.perf_counter() - t, 1)
        fine_inst = label_instances(fine > 0, **params)
        back, back_inst = fine[1::2, 1::2], fine_inst[1::2, 1::2]
        for name, labels, inst in (("direct", direct, direct_inst), ("resampled", back, back_inst)):
            row[f"{name}_f1"] = round(dice(labels > 0, truth_small > 0), 4)
            row[f"{name}_aji"] = round(aggregated_jaccard_index(inst, truth_small), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"summary": True, "images": len(rows), "model": str(args.model)}
    for key in ("direct_f1", "resampled_f1", "direct_aji", "resampled_aji", "direct_seconds", "resampled_seconds"):
        summary[key] = round(statistics.mean(r[key] for r in rows), 4) if rows else None
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
