"""The table of glas_pretrain_vs_scratch.sh: per labelled-set size and start, the mean +- std over seeds of
the held-out scores (pixel F1, object F1, object Dice, object Hausdorff), and the paired difference of each
other start against the first (same subset and seed).

    python src_train/experiments/glas_pretrain_vs_scratch_table.py [--starts scratch pre_trans nuclei]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "glas"
KEYS = ("f1", "f1_object", "object_dice", "object_hd")


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {spread:.4f} (n={len(values)})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--starts", nargs="+", default=["scratch", "pre_trans", "pre_train", "nuclei", "scratch_la"])
    p.add_argument("--sizes", nargs="+", default=["10", "20", "69"])
    args = p.parse_args(argv)
    scores: dict[tuple[str, str, str], dict] = {}
    for path in RESULTS.glob("g*_s*.json"):
        record = json.loads(path.read_text())
        name = record["name"]  # g<n>_<start>_s<seed>
        size, rest = name[1:].split("_", 1)
        start, seed = rest.rsplit("_s", 1)
        if "validation" in record:
            scores[(size, start, seed)] = record["validation"]["mean"]
    print("| labelled | start | " + " | ".join(KEYS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in KEYS) + " |")
    for size in args.sizes:
        for start in args.starts:
            runs = [v for (n, s, _), v in scores.items() if n == size and s == start]
            print(f"| {size} | {start} | " + " | ".join(_fmt([r[k] for r in runs]) for k in KEYS) + " |")
        a = args.starts[0]
        for b in args.starts[1:]:
            seeds = sorted({seed for (n, s, seed) in scores if n == size and s == a}
                           & {seed for (n, s, seed) in scores if n == size and s == b})
            diffs = {k: [scores[(size, b, s)][k] - scores[(size, a, s)][k] for s in seeds] for k in KEYS}
            print(f"| {size} | {b} - {a}, paired | " + " | ".join(
                ", ".join(f"{d:+.4f}" for d in diffs[k]) or "-" for k in KEYS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
