"""Print the active-learning experiment's results (``<out>/results.jsonl`` and ``round0.json`` written by
``active_learning.sh``) as the Markdown tables of docs/results.md: test F1 / AJI against the number of
corrected fields per strategy (mean +- std over seeds), then every (strategy, seed, round) row.

    python src_train/experiments/active_learning_table.py runs/al
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from active_learning import summarize  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    out = Path((argv if argv is not None else sys.argv[1:])[0])
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    start = out / "round0.json"
    if start.exists():
        r0 = json.loads(start.read_text())
        print(f"Start (0 fields, {r0['model']}): test F1 {r0['f1']:.3f}, AJI {r0['aji']:.3f}\n")
    print(summarize(records))
    print("| strategy | seed | round | fields | F1 | AJI | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(records, key=lambda r: (r["strategy"], r["seed"], r["round"])):
        print(f"| {r['strategy']} | {r['seed']} | {r['round']} | {r['fields']} | {r['f1']:.3f} | {r['aji']:.3f} | "
              f"{r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
