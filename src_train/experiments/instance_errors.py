"""What kind of instance errors a nuclei model makes on the 6 held-out training images (never the test images).

For each image, the model's nuclei (``genselfdiff segment --instances``'s path, at the product's precision) against
the annotation: true nuclei found (IoU > 0.5, as PQ matches), predicted nuclei that touch no true one (spurious),
true nuclei that no prediction touches (missed), merges (one prediction covering half or more of two or more true
nuclei) and splits (one true nucleus with two or more predictions each covering a fifth or more of it).

    python src_train/experiments/instance_errors.py --model runs/recipe/w_control/best.safetensors --out OUT.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.inference import segment  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import to_label_image  # noqa: E402
from src_train.experiments.instance_oracle import held_out_run  # noqa: E402
from src_train.experiments.recipe import VALIDATION  # noqa: E402


def error_counts(pred: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """Counts of matched, spurious, missed, merging and split nuclei (see the module docstring)."""
    p_ids, t_ids = np.unique(pred[pred > 0]), np.unique(truth[truth > 0])
    both = (pred > 0) | (truth > 0)
    pairs, overlap = np.unique(np.stack([pred[both], truth[both]]), axis=1, return_counts=True)
    p_area = dict(zip(*np.unique(pred[pred > 0], return_counts=True)))
    t_area = dict(zip(*np.unique(truth[truth > 0], return_counts=True)))
    inter = {(int(p), int(t)): int(n) for (p, t), n in zip(pairs.T, overlap) if p > 0 and t > 0}
    matched = sum(1 for (p, t), n in inter.items() if n / (p_area[p] + t_area[t] - n) > 0.5)
    touched_p = {p for p, _ in inter}
    touched_t = {t for _, t in inter}
    merges = sum(1 for p in p_ids if sum(1 for (q, t), n in inter.items() if q == p and n >= 0.5 * t_area[t]) >= 2)
    splits = sum(1 for t in t_ids if sum(1 for (p, u), n in inter.items() if u == t and n >= 0.2 * t_area[t]) >= 2)
    return {"true": len(t_ids), "predicted": len(p_ids), "matched": matched,
            "spurious": int(len(set(p_ids.tolist()) - touched_p)), "missed": int(len(set(t_ids.tolist()) - touched_t)),
            "merges": merges, "splits": splits}


def main(argv: list[str] | None = None) -> int:
    args, model, info, settings, folder = held_out_run(__doc__, argv)
    settings = replace(settings, instances=True)
    per_image = {}
    for stem in VALIDATION:
        rgb = read_array(folder / "images" / f"{stem}.tif")
        truth = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        result = segment(model, info, rgb, settings)
        per_image[stem] = error_counts(np.asarray(result.instances), truth)
        print(stem, per_image[stem], flush=True)
    total = {k: int(sum(v[k] for v in per_image.values())) for k in next(iter(per_image.values()))}
    print("total", total)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": str(args.model), "precision": args.precision, "total": total,
                                    "per_image": per_image}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
