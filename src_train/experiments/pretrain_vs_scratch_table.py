"""Print the pretrained-vs-scratch comparison (records ``docs/results/recipe/n{N}_{start}_s{seed}.json``,
written by ``pretrain_vs_scratch.sh``) as a Markdown table: per number of labelled images and start,
held-out F1 / IoU / AJI as mean +- standard deviation over seeds, the per-seed F1, and the paired
difference (pretrained - scratch, same subset and seed).

    python src_train/experiments/pretrain_vs_scratch_table.py [--starts scratch pre1000] [--versus scratch]

``--starts scratch pre1000 pre1000t50 --versus pre1000``: the small-t rows paired with the t = 0 start.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "recipe"
NAME = re.compile(r"^n(\d+)_([a-z0-9]+)_s(\d+)$")


def load(starts: list[str]) -> dict[tuple[int, str], dict[int, dict]]:
    runs: dict[tuple[int, str], dict[int, dict]] = defaultdict(dict)
    for path in sorted(RESULTS.glob("n*_*_s*.json")):
        m = NAME.match(path.stem)
        if not m or m.group(2) not in starts:
            continue
        record = json.loads(path.read_text())
        if "validation" in record:
            runs[(int(m.group(1)), m.group(2))][int(m.group(3))] = record["validation"]["mean"]
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--starts", nargs="+", default=["scratch", "pre1000"])
    p.add_argument("--versus", default="scratch", help="the start the paired differences are taken against")
    args = p.parse_args(argv)
    runs = load(args.starts)
    print(f"| labelled images | start | seeds | val F1 | val IoU | val AJI | F1 per seed | F1 minus {args.versus} (paired) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (n, start) in sorted(runs, key=lambda key: (key[0], args.starts.index(key[1]))):
        seeds = runs[(n, start)]
        cells = [str(n), start, str(len(seeds))]
        for key in ("f1", "iou", "aji"):
            v = np.array([seeds[s][key] for s in sorted(seeds)])
            cells.append(f"{v.mean():.4f} +- {v.std():.4f}")
        cells.append(", ".join(f"{seeds[s]['f1']:.3f}" for s in sorted(seeds)))
        base = runs.get((n, args.versus), {})
        common = sorted(set(seeds) & set(base))
        if start != args.versus and common:
            d = np.array([seeds[s]["f1"] - base[s]["f1"] for s in common])
            cells.append(f"{d.mean():+.4f} ({', '.join(f'{x:+.3f}' for x in d)})")
        else:
            cells.append("-")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
