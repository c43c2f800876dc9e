"""Draw DDIM samples from pretraining weights and save them as one PNG grid.

    python src_train/sample.py --model RUN_DIR_or_MODEL.safetensors --out samples.png [--n 16] [--steps 50]

``--model`` may be a pretrained model file, a training checkpoint or a pretraining run folder (its
latest checkpoint). Tissue-like pink/purple samples show the network has learnt H&E structure.
"""

from __future__ import annotations

import argparse
import sys

from napari_genselfdiff.core.errors import GenSelfDiffError
from napari_genselfdiff.core.io.atomic import atomic_path
from napari_genselfdiff.core.training.preview import make_grid, sample_preview

from _common import setup_distributed  # noqa: F401  (puts the repository on sys.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="pretrained model file, checkpoint or run folder")
    parser.add_argument("--out", default="samples.png", help="PNG file to write")
    parser.add_argument("--n", type=int, default=16, help="number of samples")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--size", type=int, default=None, help="sample side (default: the training patch size)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0: deterministic)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    args = parser.parse_args(argv)
    try:
        images = sample_preview(args.model, n=args.n, steps=args.steps, size=args.size, seed=args.seed,
                                eta=args.eta, device=args.device)
        import imageio.v3 as iio

        with atomic_path(args.out) as tmp:
            iio.imwrite(tmp, make_grid(images), extension=".png")
    except (GenSelfDiffError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(images)} samples of {images.shape[1]}x{images.shape[2]} written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
