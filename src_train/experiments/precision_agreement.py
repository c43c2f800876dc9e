"""Does bf16 inference hold the bundled model's accuracy? Segment held-out images in fp32 and in bf16
autocast (what ``precision auto`` picks on CPUs with native bf16 and on GPUs) and compare.

    python src_train/experiments/precision_agreement.py [--model default] [--out docs/results/recipe/precision_agreement.json]

Prints and writes, per image and on average: the share of pixels whose label differs between the two,
and whole-image F1 / IoU of each precision against the binary mask. Runs on any CPU: where bf16 is not
native it is emulated (the same arithmetic, but some 10-30x slower: ``--crop 256`` scores the central
256 x 256 px of each image, which takes minutes instead of hours), so accuracy can be checked on
machines where speed cannot.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipe import VALIDATION  # noqa: E402  (the same held-out images as the recipe's validation)

from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.inference.device import cpu_has_native_bf16  # noqa: E402
from napari_genselfdiff.core.inference.driver import load_segmentation_model  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "monuseg" / "train")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "recipe" / "precision_agreement.json")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--crop", type=int, default=0, help="score only the central CROP x CROP pixels (0: whole images)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    model, info, _ = load_segmentation_model(args.model, "cpu")
    rows, start = {}, time.perf_counter()
    for stem in VALIDATION:
        rgb = read_array(args.data / "images" / f"{stem}.tif")
        truth = (read_array(args.data / "masks" / f"{stem}.png") > 0).astype(np.uint8)
        if args.crop:
            y, x = (rgb.shape[0] - args.crop) // 2, (rgb.shape[1] - args.crop) // 2
            rgb, truth = rgb[y:y + args.crop, x:x + args.crop], truth[y:y + args.crop, x:x + args.crop]
        labels = {}
        for precision in ("fp32", "bf16"):
            settings = InferenceSettings(device="cpu", precision=precision)
            labels[precision] = (np.asarray(segment(model, info, rgb, settings).labels) > 0).astype(np.uint8)
        row = {"pixels_differing": float(np.mean(labels["fp32"] != labels["bf16"]))}
        for precision, fg in labels.items():
            scores = evaluate_pair(fg, truth, instances=False)
            row[f"f1_{precision}"], row[f"iou_{precision}"] = float(scores["f1"]), float(scores["iou"])
        rows[stem] = row
        print(stem, {k: round(v, 5) for k, v in row.items()}, flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    record = {"command": "python src_train/experiments/precision_agreement.py " + " ".join(argv or sys.argv[1:]),
              "model": str(info.path), "native_bf16": cpu_has_native_bf16(), "mean": mean, "per_image": rows,
              "seconds": time.perf_counter() - start}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print("mean", {k: round(v, 5) for k, v in mean.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
