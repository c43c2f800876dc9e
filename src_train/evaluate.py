"""Score predicted masks against ground truth on whole images (IoU, F1, AJI, HD, HD95).

    python src_train/evaluate.py --pred PRED_DIR --gt GT_DIR [--instances] [--num-classes K] [--json out.json]

A thin wrapper over napari_genselfdiff.core.metrics.evaluation (files pair by name, as in training); the
JSON is that of ``genselfdiff evaluate --json`` (infinite HDs as null).
"""

from __future__ import annotations

import argparse
import sys

from napari_genselfdiff.core.errors import GenSelfDiffError
from napari_genselfdiff.core.io.atomic import write_text_atomic
from napari_genselfdiff.core.metrics.evaluation import evaluate_dirs, format_table, scores_json

from _common import setup_distributed  # noqa: F401  (puts the repository on sys.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pred", required=True, help="folder of predicted masks or labels")
    parser.add_argument("--gt", required=True, help="folder of ground-truth masks or labels")
    parser.add_argument("--instances", action="store_true", help="label values are instance ids (AJI on them)")
    parser.add_argument("--num-classes", type=int, default=None, help="classes of class maps (adds per-class scores)")
    parser.add_argument("--json", default=None, help="also write the full result as JSON")
    args = parser.parse_args(argv)
    try:
        result = evaluate_dirs(args.pred, args.gt, instances=args.instances, num_classes=args.num_classes)
        if args.json:
            write_text_atomic(args.json, scores_json(result))
    except (GenSelfDiffError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    return 0 if result["per_image"] else 1


if __name__ == "__main__":
    sys.exit(main())
