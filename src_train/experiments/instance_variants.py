"""Nucleus splitting from the network's probability map vs. from its binary mask, scored by AJI on the
6 held-out training images of recipe.py (never the test images).

    python src_train/experiments/instance_variants.py --model runs/recipe/<run>/best.safetensors --out FILE.json

Variants: "mask" = the distance-transform watershed of core.inference.instances on the argmax mask (what
ships); "prob_ws" = markers from the same h-maxima but on the mask thresholded at a higher probability
(the nuclei's cores, which touching nuclei share less), flooding the nucleus-probability landscape
within the argmax mask, so that the split follows the low-probability line between two nuclei.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipe import VALIDATION  # noqa: E402

from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.inference.instances import label_instances  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402


def prob_watershed(prob: np.ndarray, core_threshold: float, h: float = 1.0, min_distance: float = 8.0,
                   min_size: int = 30) -> np.ndarray:
    from skimage.segmentation import watershed

    fg = prob > 0.5
    core_instances = label_instances(prob > core_threshold, h=h, min_distance=min_distance, min_size=min_size // 2)
    labels = watershed(-prob, markers=core_instances, mask=fg)
    # foreground components without a core keep their own label
    rest, n = ndimage.label(fg & (labels == 0))
    labels = np.where(rest > 0, rest + labels.max(), labels)
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < min_size] = 0
    return labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "monuseg")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    model, info = load_model(args.model)
    scores: dict[str, list[float]] = {}
    for stem in VALIDATION:
        rgb = read_array(args.data / "train" / "images" / f"{stem}.tif")[..., :3]
        logits = np.zeros((2, *rgb.shape[:2]), np.float32)
        segment(model, info, rgb, InferenceSettings(device="cpu", precision="fp32"), logits_out=logits)
        e = np.exp(logits - logits.max(0))
        prob = e[1] / e.sum(0)
        gt = to_label_image(read_array(args.data / "train" / "instance_masks" / f"{stem}.png"))
        variants = {"mask": label_instances(prob > 0.5)}
        for t in (0.7, 0.8, 0.9):
            variants[f"prob_ws_core{t}"] = prob_watershed(prob, t)
            variants[f"mask_at_{t}"] = label_instances(prob > t)
        for name, lab in variants.items():
            scores.setdefault(name, []).append(evaluate_pair(lab, gt, instances=True)["aji"])
        print(stem, {k: round(v[-1], 4) for k, v in scores.items()}, flush=True)
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    print(json.dumps(mean, indent=1))
    args.out.write_text(json.dumps({"model": str(args.model), "images": VALIDATION, "mean_aji": mean,
                                    "per_image": scores}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
