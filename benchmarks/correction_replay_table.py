"""The correction-loop replay's table (and plot) from ``benchmarks/correction_replay.py``'s results.

For each run name and condition: the gain in pixel F1, AJI and PQ on the organ's other images over the
base model (step 0), mean +- standard deviation over organs x seeds, at each scored step, with the CPU
minutes of training so far (mean); the F1 lost on the other organs' images (``--forgetting`` runs) at
the last step. Writes markdown to stdout and, with ``--json``, the numbers; ``--plot`` draws F1 gain
against CPU minutes (matplotlib, the ``benchmarks`` extra).

    python benchmarks/correction_replay_table.py --names lung_defaults lung_dicece --json docs/results/replay/lung.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def read_rows(folders: list[Path]) -> list[dict]:
    rows = []
    for folder in folders:
        path = folder / "results.jsonl" if folder.is_dir() else folder
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def summarise(rows: list[dict], organs: list[str] | None = None, by_organ: bool = False) -> list[dict]:
    """One record per (name, condition, step): gains over step 0, mean and sd over (organ, seed); with
    ``by_organ``, one per organ too (the name becomes "<name> <organ>")."""
    latest: dict[tuple, dict] = {}
    for r in rows:  # a resumed run may log a step twice: keep the last
        if organs and r["organ"] not in organs:
            continue
        name = f"{r['name']} {r['organ']}" if by_organ else r["name"]
        latest[(name, r["organ"], r["seed"], r["condition"], r["step"])] = r
    groups: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for (name, organ, seed, cond, step), r in latest.items():
        base = latest.get((name, organ, seed, cond, 0))
        if base is not None:
            groups[(name, cond, step)].append((r, base))
    out = []
    for (name, cond, step), pairs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        rec = {"name": name, "condition": cond, "step": step, "n": len(pairs),
               "organs": sorted({r["organ"] for r, _ in pairs}),
               "cpu_min": float(np.mean([r["cpu_s"] for r, _ in pairs])) / 60,
               "n_fields": pairs[0][0].get("n_fields")}
        for key in ("f1", "aji", "pq"):
            gains = np.array([r[key] - b[key] for r, b in pairs])
            rec[key] = float(np.mean([r[key] for r, _ in pairs]))
            rec[f"d_{key}"], rec[f"d_{key}_sd"] = float(gains.mean()), float(gains.std(ddof=1)) if len(gains) > 1 else 0.0
        other = [(r["other_f1"], b["other_f1"]) for r, b in pairs if "other_f1" in r and "other_f1" in b and step]
        if other:
            rec["d_other_f1"] = float(np.mean([a - b for a, b in other]))
        test = [(r["test_f1"], b["test_f1"]) for r, b in pairs if "test_f1" in r and "test_f1" in b and step]
        if test:
            rec["d_test_f1"] = float(np.mean([a - b for a, b in test]))
            rec["n_test"] = len(test)
        out.append(rec)
    return out


def markdown(records: list[dict]) -> str:
    lines = ["| run | corrected | step | CPU min | F1 | dF1 | dAJI | dPQ | dF1 other organs | dF1 MoNuSeg test | n |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in records:
        other = f"{r['d_other_f1']:+.4f}" if "d_other_f1" in r else ""
        test = f"{r['d_test_f1']:+.4f} (n {r['n_test']})" if "d_test_f1" in r else ""
        lines.append(
            f"| {r['name']} | {r['condition']} | {r['step']} | {r['cpu_min']:.2f} | {r['f1']:.4f} | "
            f"{r['d_f1']:+.4f} +- {r['d_f1_sd']:.4f} | {r['d_aji']:+.4f} +- {r['d_aji_sd']:.4f} | "
            f"{r['d_pq']:+.4f} +- {r['d_pq_sd']:.4f} | {other} | {test} | {r['n']} |")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    series: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        series[(r["name"], r["condition"])].append(r)
    for (name, cond), recs in sorted(series.items()):
        recs.sort(key=lambda r: r["step"])
        ax.errorbar([r["cpu_min"] for r in recs], [r["d_f1"] for r in recs], yerr=[r["d_f1_sd"] for r in recs],
                    marker="o", capsize=3, label=f"{name}: {cond}")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("CPU minutes of training, pretraining included (one thread, native bf16)")
    ax.set_ylabel("pixel F1 gain on the organ's other images")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--names", nargs="+", required=True, help="run names (folders under --runs) or results.jsonl files")
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "replay")
    p.add_argument("--organs", nargs="+", default=None, help="only these organs")
    p.add_argument("--by-organ", action="store_true", help="one row per organ as well as the mean")
    p.add_argument("--json", type=Path, default=None, help="write the records (and the raw rows) here")
    p.add_argument("--plot", type=Path, default=None, help="draw F1 gain against CPU minutes into this PNG")
    args = p.parse_args(argv)
    folders = [Path(n) if Path(n).exists() else args.runs / n for n in args.names]
    rows = read_rows(folders)
    if not rows:
        print("no results found in " + ", ".join(map(str, folders)), file=sys.stderr)
        return 2
    records = summarise(rows, args.organs) + (summarise(rows, args.organs, by_organ=True) if args.by_organ else [])
    print(markdown(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": "python benchmarks/correction_replay_table.py "
                                         + " ".join(argv or sys.argv[1:]), "records": records, "rows": rows}, indent=1))
    if args.plot:
        plot(records, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
