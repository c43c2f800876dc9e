"""Is the nuclei model's foreground biased (nuclei drawn too small or too large)? On the 6 HELD-OUT MoNuSeg
training images (never the test images).

    python src_train/experiments/foreground_bias.py --model runs/recipe/v2_long/best.safetensors \\
        --out docs/results/nuclei_v2/foreground_bias_v2_long.json

The network runs once per image (as ``genselfdiff segment`` runs it); the foreground is then cut at
p(nucleus) > ``threshold`` instead of the argmax (0.5), and split with the model's own splitting. Per-image
means of pixel precision / recall / F1, AJI, PQ and SQ per threshold, so a systematic bias shows as a
threshold other than 0.5 scoring better.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from instance_oracle import held_out_run, raw_maps  # noqa: E402
from recipe import VALIDATION  # noqa: E402

from napari_genselfdiff.core.inference.instances import split_nuclei  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics import instance_scores  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import to_label_image  # noqa: E402

THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def main(argv: list[str] | None = None) -> int:
    import torch

    args, model, info, settings, folder = held_out_run(__doc__, argv)
    per: dict[float, list[list[float]]] = {t: [] for t in THRESHOLDS}
    for stem in VALIDATION:
        rgb = read_array(folder / "images" / f"{stem}.tif")
        truth = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        logits, cue = raw_maps(model, info, rgb, settings, ())
        prob = torch.from_numpy(logits).softmax(0)[1].numpy()
        for t in THRESHOLDS:
            fg = prob > t
            inst = split_nuclei(fg, cue, info)
            tp = float((fg & (truth > 0)).sum())
            precision, recall = tp / max(fg.sum(), 1), tp / max((truth > 0).sum(), 1)
            s = instance_scores(inst, truth)
            per[t].append([precision, recall, 2 * precision * recall / max(precision + recall, 1e-9),
                           s["aji"], s["pq"], s["sq"]])
        print("done", stem, flush=True)
    keys = ("precision", "recall", "f1", "aji", "pq", "sq")
    rows = [{"threshold": t, **dict(zip(keys, map(float, np.mean(per[t], axis=0))))} for t in THRESHOLDS]
    for r in rows:
        print(" ".join(f"{k} {v:.4f}" for k, v in r.items()))
    record = {"command": "python src_train/experiments/foreground_bias.py " + shlex.join(argv or sys.argv[1:]),
              "model": str(args.model), "images": VALIDATION, "precision": args.precision, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
