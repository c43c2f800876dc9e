"""How well nucleus models do on an organ they never saw: each model on all six MoNuSeg training images of
one organ (whole images; pixel F1, AJI, PQ as per-image means), with the shipped model's splitting settings
and resolution, at the product's precision. For the leave-organ-out models (``leave_organ_out.sh``,
``stain_strength_loo.sh``): an organ left out of training stands in for a hospital nobody here has seen.

    python src_train/experiments/organ_scores.py --organ lung --model runs/recipe/loo_lung/last.safetensors \\
        --model runs/recipe/loo_lung_stain2/last.safetensors [--out FILE.jsonl]

One JSON line per model (and its per-image rows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from correction_replay import image_scores, load_image, with_shipped_splitting  # noqa: E402

from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from src_train.experiments.organs import ORGANS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--organ", required=True, choices=sorted(ORGANS))
    p.add_argument("--model", action="append", required=True, type=Path, help="a model file (repeatable)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "monuseg" / "train")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="append the JSON lines here as well")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not (args.data / "instance_masks").is_dir():
        print(f"needs the MoNuSeg training images with instance masks at {args.data} (../shared/data/README.md)",
              file=sys.stderr)
        return 2
    images = [(stem, *load_image(args.data, stem)) for stem in ORGANS[args.organ]]
    for path in args.model:
        model, info = load_model(path)
        info = with_shipped_splitting(info)
        rows = image_scores(model, info, images, args.precision)
        record = {"model": str(path), "organ": args.organ, "precision": args.precision,
                  **{k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("f1", "aji", "pq")}, "images": rows}
        line = json.dumps(record)
        print(line, flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
