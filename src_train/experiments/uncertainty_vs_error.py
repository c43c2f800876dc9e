"""Which uncertainty predicts the model's errors better? (issue 13, "what to correct next")

The bundled model (``napari_genselfdiff/models/default_nuclei.safetensors``, trained on the other 24
MoNuSeg training images) segments the 6 held-out training images (``HELD_OUT``) four times: as they
are and flipped left-right, up-down and both (:data:`..uncertainty.FLIPS`). A pixel is *wrong* where
the unflipped pass's class (nucleus / background) differs from the ground-truth mask. Compared maps:

- ``entropy``: normalised entropy of one pass's class probabilities (1 pass);
- ``flip_disagreement`` (2 or 4 passes): mutual information between the flipped passes' predictions;
- ``flip_entropy`` (2 or 4 passes): entropy of the flipped passes' mean probabilities (one pass's
  entropy and the disagreement together).

Measures, pooled over the 6 images:

- ``pixel_auroc``: area under the ROC curve of the map for telling wrong pixels from right ones;
- per field size (64 and 256 px fields, the last row/column smaller, as ``rank_fields`` cuts them):
  ``spearman_error_rate`` / ``spearman_1_minus_f1``: Spearman correlation of a field's mean
  uncertainty with its error rate (wrong pixels / pixels) and with 1 - its foreground F1 (F1 = 1 when
  neither the prediction nor the truth has foreground there); ``precision_top10pct``: of the 10 %
  fields ranked most uncertain, the share that are among the 10 % with the highest error rate (random:
  0.10); ``errors_in_top10pct``: the share of all wrong pixels that lie in those fields (random: about
  0.10);
- ``seconds_per_image``: wall time per image of the passes plus the map (``cpu_seconds_per_image``:
  process CPU time), with one thread.

One JSON object per line (one number each, with the command) goes to ``--out``:

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python src_train/experiments/uncertainty_vs_error.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.inference import InferenceSettings  # noqa: E402
from napari_genselfdiff.core.inference.predict import segment_progressive  # noqa: E402
from napari_genselfdiff.core.inference.uncertainty import FLIPS, entropy_map, flip_uncertainty  # noqa: E402
from napari_genselfdiff.core.io.atomic import write_text_atomic  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.progress import run_generator  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

#: the 6 MoNuSeg training images the bundled model did not train on
HELD_OUT = [
    "TCGA-21-5784-01Z-00-DX1", "TCGA-A7-A13E-01Z-00-DX1", "TCGA-B0-5698-01Z-00-DX1",
    "TCGA-CH-5767-01Z-00-DX1", "TCGA-E2-A1B5-01Z-00-DX1", "TCGA-NH-A8F7-01A-01-TS1",
]

#: method name -> (map kind, number of passes: FLIPS[:n])
METHODS = {
    "entropy": ("entropy", 1),
    "flip_disagreement_2": ("flip_disagreement", 2),
    "flip_disagreement_4": ("flip_disagreement", 4),
    "flip_entropy_2": ("flip_entropy", 2),
    "flip_entropy_4": ("flip_entropy", 4),
}

FIELD_SIZES = (64, 256)
TOP = 0.10


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores sharing their mean rank)."""
    from scipy.stats import rankdata

    scores, positive = np.ravel(scores), np.ravel(positive).astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def field_table(umap: np.ndarray, pred: np.ndarray, gt: np.ndarray, size: int) -> np.ndarray:
    """Rows (mean uncertainty, error rate, 1 - F1, wrong pixels) of each ``size`` field."""
    h, w = umap.shape
    rows = []
    for y in range(0, h, size):
        for x in range(0, w, size):
            sl = (slice(y, min(y + size, h)), slice(x, min(x + size, w)))
            p, g = pred[sl], gt[sl]
            tp = float(np.logical_and(p, g).sum())
            denom = float(p.sum() + g.sum())
            f1 = 1.0 if denom == 0 else 2.0 * tp / denom
            wrong = float((p != g).sum())
            rows.append((float(umap[sl].mean()), wrong / p.size, 1.0 - f1, wrong))
    return np.asarray(rows, np.float64)


def field_measures(table: np.ndarray) -> dict[str, float]:
    from scipy.stats import spearmanr

    u, rate, one_minus_f1, wrong = table.T
    k = max(1, int(round(TOP * len(u))))
    top_u = np.argsort(-u, kind="stable")[:k]
    top_err = set(np.argsort(-rate, kind="stable")[:k].tolist())
    return {
        "spearman_error_rate": float(spearmanr(u, rate).statistic),
        "spearman_1_minus_f1": float(spearmanr(u, one_minus_f1).statistic),
        "precision_top10pct": len(top_err.intersection(top_u.tolist())) / k,
        "errors_in_top10pct": float(wrong[top_u].sum() / max(wrong.sum(), 1.0)),
        "fields": float(len(u)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "monuseg" / "train")
    p.add_argument("--model", type=Path, default=REPO / "napari_genselfdiff" / "models" / "default_nuclei.safetensors")
    p.add_argument("--images", nargs="+", default=HELD_OUT, help="image stems (default: the 6 held-out images)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "uncertainty_vs_error.json")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    command = "OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python " + shlex.join(
        [os.path.relpath(__file__, REPO), *(sys.argv[1:] if argv is None else argv)])
    network, info = load_model(args.model)
    settings = InferenceSettings(device="cpu", precision="fp32")
    maps: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}
    seconds = {m: 0.0 for m in METHODS}
    cpu_seconds = {m: 0.0 for m in METHODS}
    wrongs, preds, gts = [], [], []
    for stem in args.images:
        image = read_array(args.data / "images" / f"{stem}.tif")
        gt = read_array(args.data / "masks" / f"{stem}.png") > 0
        h, w = gt.shape
        passes, pass_wall, pass_cpu, pred = [], [], [], None
        for flip_rows, flip_cols in FLIPS:
            axes = tuple(a for a, f in ((0, flip_rows), (1, flip_cols)) if f)
            view = np.flip(image, axes) if axes else image
            logits = np.zeros((network.config.out_channels, h, w), np.float32)
            target = np.flip(logits, tuple(a + 1 for a in axes)) if axes else logits
            wall, cpu = time.perf_counter(), time.process_time()
            result = run_generator(segment_progressive(network, info, view, settings, logits_out=target))
            pass_wall.append(time.perf_counter() - wall)
            pass_cpu.append(time.process_time() - cpu)
            if pred is None:
                pred = np.asarray(result.labels) > 0
            passes.append(logits)
        for method, (kind, n) in METHODS.items():
            wall, cpu = time.perf_counter(), time.process_time()
            umap = entropy_map(passes[0]) if kind == "entropy" else flip_uncertainty(passes[:n], kind)
            seconds[method] += sum(pass_wall[:n]) + time.perf_counter() - wall
            cpu_seconds[method] += sum(pass_cpu[:n]) + time.process_time() - cpu
            maps[method].append(umap)
        wrong = pred != gt
        wrongs.append(wrong)
        preds.append(pred)
        gts.append(gt)
        print(f"{stem}: wrong pixels {wrong.mean():.4f}, passes {', '.join(f'{s:.1f}' for s in pass_wall)} s",
              flush=True)

    lines = []

    def record(method: str, metric: str, value: float, **extra) -> None:
        lines.append({"experiment": "uncertainty_vs_error", "method": method, "metric": metric, **extra,
                      "value": round(float(value), 4), "images": len(args.images), "model": args.model.name,
                      "command": command})
        print(f"{method:>20} {metric:<26} {' '.join(f'{k}={v}' for k, v in extra.items()):<12} {value:.4f}",
              flush=True)

    n = len(args.images)
    record("all", "wrong_pixel_share", float(np.mean([w_.mean() for w_ in wrongs])))
    wrong_all = np.concatenate([w_.ravel() for w_ in wrongs])
    for method, (_, passes_n) in METHODS.items():
        record(method, "passes", passes_n)
        record(method, "pixel_auroc", auroc(np.concatenate([m.ravel() for m in maps[method]]), wrong_all))
        record(method, "pixel_auroc_mean_per_image",
               float(np.mean([auroc(m, w_) for m, w_ in zip(maps[method], wrongs)])))
        for size in FIELD_SIZES:
            table = np.concatenate([field_table(m, p_, g, size) for m, p_, g in zip(maps[method], preds, gts)])
            for metric, value in field_measures(table).items():
                record(method, metric, value, field=size)
        record(method, "seconds_per_image", seconds[method] / n)
        record(method, "cpu_seconds_per_image", cpu_seconds[method] / n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, "".join(json.dumps(line) + "\n" for line in lines))
    print(f"wrote {len(lines)} lines to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
