"""``genselfdiff evaluate``: score a folder of predicted masks against a folder of ground truth.

Files pair by name (``X_labels.tif`` with ``X.png``; see :func:`..core.data.folders.match_key`). Each image
is scored whole (IoU, F1, AJI, PQ/DQ/SQ, object F1, HD, HD95; GlaS object Dice and Hausdorff with
``--glas``; per class for class maps with ``--num-classes`` > 2), the
table is printed, and ``--json FILE`` writes::

    {"per_image": {name: {"iou", "f1", "aji", "pq", "dq", "sq", "f1_object", "hd", "hd95"
                          [, "object_dice", "object_hd"], "counts": {...}[, "per_class"]}},
     "mean": {... the same score keys: PER-IMAGE means, the figures to quote ...},
     "pooled": {"aji", "pq", "dq", "sq", "f1_object"}: counts summed over the images first,
     ["groups": {prefix: {"n", "mean", "pooled"}} with --by-prefix,]
     "n_infinite_hd": int, "unmatched": {"pred": [...], "gt": [...]}, "errors": {name: message}}

Ground truth may also be QuPath GeoJSON (``X.geojson``, QuPath's "Export objects as GeoJSON"):
its detections and cells (a cell by its nucleus) are rasterised over the prediction's pixels; with
``--classes`` their classifications are matched to those names (per-class scores with
``--num-classes``), without it every object is foreground. Only the pixels inside its region
annotations are scored when it has some (prediction and ground truth are both set to background
outside them).

JSON has no infinity: an infinite HD/HD95 (exactly one mask empty) and an undefined mean are written
as null; ``n_infinite_hd`` counts the images with an infinite HD.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "evaluate", run,
        help="score predicted masks against ground truth (IoU, F1, AJI, PQ, object F1, HD, HD95; GlaS)",
        description="Score every predicted mask in --pred against the ground truth of the same name in "
        "--gt, on whole images, and print a table.",
        example="genselfdiff evaluate --pred results/ --gt monuseg/test/instance_masks --json scores.json",
    )
    parser.add_argument("--pred", required=True, type=Path, metavar="DIR", help="folder of predictions")
    parser.add_argument("--gt", required=True, type=Path, metavar="DIR",
                        help="folder of ground truth: masks, or QuPath GeoJSON files (.geojson)")
    parser.add_argument(
        "--instances", action="store_true",
        help="label values are instance ids (e.g. <stem>_instances.tif vs instance masks); AJI uses them as given",
    )
    parser.add_argument(
        "--num-classes", type=int, default=None, metavar="N",
        help="number of classes of class maps, background included; N > 2 adds per-class scores",
    )
    parser.add_argument(
        "--classes", nargs="+", default=None, metavar="NAME",
        help="class names, background first, that QuPath GeoJSON classifications are matched to "
        "(without it every GeoJSON object is foreground)",
    )
    parser.add_argument(
        "--glas", action="store_true",
        help="also score the GlaS contest's object Dice and object Hausdorff (Sirinukunwattana et al. 2017); "
        "use with --instances for gland label maps",
    )
    parser.add_argument(
        "--by-prefix", action="store_true",
        help="also report means per name prefix before the first '_' (GlaS testA_* and testB_* apart)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the scores as JSON")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..core.io.atomic import write_text_atomic
    from ..core.metrics import evaluate_dirs, format_table
    from ..core.metrics.evaluation import scores_json

    with tqdm(desc="evaluating", unit="image", leave=False, disable=None, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        result = evaluate_dirs(
            args.pred, args.gt, instances=args.instances, num_classes=args.num_classes, progress=progress,
            class_names=args.classes, glas=args.glas, by_prefix=args.by_prefix,
        )
    print(format_table(result))
    if args.json is not None:
        write_text_atomic(args.json, scores_json(result))
        print(f"scores written to {args.json}")
    return 1 if result["errors"] or not result["per_image"] else 0
