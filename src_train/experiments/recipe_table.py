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
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
