"""Print the recipe runs of docs/results/recipe/*.json as the Markdown table of docs/results.md.

    python src_train/experiments/recipe_table.py [--prefix abl_] [--test]

One row per run: the factor that differs from the base recipe, steps, wall time of the training call,
whole-image F1 / IoU / AJI / HD95 on the 6 held-out training images (and on the 14 test images with
--test, for runs that have been scored there), and the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "recipe"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefix", default="")
    p.add_argument("--test", action="store_true", help="add the test-image columns")
    p.add_argument("--instances", action="store_true",
                   help="instance columns: AJI / PQ / object F1 at 1x and downsampled 2x (x0.5), post-processing seconds")
    args = p.parse_args(argv)
    if args.instances:
        return instance_table(args.prefix)
    keys = ("f1", "iou", "aji", "hd95")
    head = ["run", "steps", "train min"] + [f"val {k.upper()}" for k in keys]
    if args.test:
        head += [f"test {k.upper()}" for k in keys]
    print("| " + " | ".join(head + ["command"]) + " |")
    print("|" + " --- |" * (len(head) + 1))
    for path in sorted(RESULTS.glob(f"{args.prefix}*.json")):
        r = json.loads(path.read_text())
        val = r.get("validation", {}).get("mean", {})
        cells = [r["name"], str(r["settings"]["steps"]), f"{r['train_seconds_this_call'] / 60:.0f}"]
        cells += [f"{val[k]:.{2 if k == 'hd95' else 4}f}" if k in val else "-" for k in keys]
        if args.test:
            test = r.get("test", {}).get("mean", {})
            cells += [f"{test[k]:.{2 if k == 'hd95' else 4}f}" if k in test else "-" for k in keys]
        print("| " + " | ".join(cells + [f"`{r['command']}`"]) + " |")
    return 0


def instance_table(prefix: str) -> int:
    """Rows of the instance-output comparison: per-image means on the 6 held-out images, as given and 2x smaller."""
    head = ["run", "output", "scale aug", "F1 px", "AJI", "PQ", "F1 obj", "AJI x0.5", "PQ x0.5", "F1 px x0.5",
            "post-proc s/image", "command"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for path in sorted(RESULTS.glob(f"{prefix}*.json")):
        r = json.loads(path.read_text())
        if "validation" not in r:
            continue
        one, half = r["validation"], r.get("validation_x0.5", {})
        m1, m2 = one.get("mean", {}), half.get("mean", {})
        n = max(1, len(one.get("per_image", {})))

        def cell(m, k):
            return f"{m[k]:.4f}" if k in m else "-"
        post = f"{one['postprocess_seconds'] / n:.2f}" if "postprocess_seconds" in one else "-"
        scale = r["settings"].get("scale_range")
        cells = [r["name"], one.get("output", r["settings"].get("output") or "classes"),
                 f"{scale[0]:g}-{scale[1]:g}" if scale else "-", cell(m1, "f1"), cell(m1, "aji"), cell(m1, "pq"),
                 cell(m1, "f1_object"), cell(m2, "aji"), cell(m2, "pq"), cell(m2, "f1"), post, f"`{r['command']}`"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
