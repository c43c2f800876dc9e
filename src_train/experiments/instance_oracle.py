"""Where the nuclei model loses AJI, on the 6 HELD-OUT MoNuSeg training images (never the test images).

    python src_train/experiments/instance_oracle.py --model runs/recipe/v2_long/best.safetensors \\
        --out docs/results/nuclei_v2/oracle_v2_long.json

Segments each held-out image the way ``genselfdiff segment --instances`` does (the model's own
splitting, its file's parameters), then swaps one ingredient at a time for the annotation's:

- ``model``: the model's foreground and its distance-map markers (what users get);
- ``true markers``: the model's foreground, markers at the annotated nuclei's centres (a perfect
  splitter of the model's foreground): what better splitting could gain at most;
- ``true foreground``: the annotation's foreground split by the model's distance map: what a better
  pixel classifier could gain at most with today's splitting;
- ``flips x4``: test-time augmentation, logits and distance maps averaged over the four flips of the
  image (4x the network's cost), split as ``model``.

Per-image means of F1 (pixels), AJI, PQ and object F1 (pairs at IoU > 0.5), as results.md reports.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipe import REPO, VALIDATION  # noqa: E402

from napari_genselfdiff.core.inference import InferenceSettings, segment_progressive  # noqa: E402
from napari_genselfdiff.core.inference.instances import split_nuclei  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics import instance_scores  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.progress import Returning  # noqa: E402

FLIPS = ((), (0,), (1,), (0, 1))


def held_out_run(doc: str, argv: list[str] | None, extra=None):
    """The shared start of the held-out analyses (this file, marker_rules.py, foreground_bias.py): their
    options (--model, --data, --precision, --threads, --out and ``extra(parser)``'s), the model, the
    inference settings ``genselfdiff segment`` uses, and the MoNuSeg training folder.

    Returns:
        (args, model, info, settings, folder)
    """
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--precision", default="auto", choices=["fp32", "bf16", "auto"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    if extra is not None:
        extra(p)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    model, info = load_model(args.model)
    settings = InferenceSettings(tile=512, device="auto", precision=args.precision, instances=False)
    return args, model, info, settings, args.data / "monuseg" / "train"


def raw_maps(model, info, rgb: np.ndarray, settings: InferenceSettings, axes: tuple[int, ...]):
    """(logits (C, H, W), cue (E, H, W)) of the image flipped along ``axes``, flipped back."""
    image = np.ascontiguousarray(np.flip(rgb, axes)) if axes else rgb
    h, w = rgb.shape[:2]
    logits = np.zeros((len(info.classes), h, w), np.float32)
    cue = np.zeros((1, h, w), np.float32)
    events = Returning(segment_progressive(model, info, image, settings, logits_out=logits, cue_out=cue))
    for _ in events:
        pass
    flip_back = tuple(a + 1 for a in axes)
    return (np.flip(logits, flip_back) if axes else logits), (np.flip(cue, flip_back) if axes else cue)


def true_marker_split(foreground: np.ndarray, distance: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The foreground flooded from one marker per annotated nucleus (its centre pixel, kept if foreground)."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    markers = np.zeros(truth.shape, np.int32)
    ids = np.unique(truth)
    ids = ids[ids > 0]
    for k, c in enumerate(ndimage.center_of_mass(truth > 0, truth, ids), start=1):
        r, q = int(round(c[0])), int(round(c[1]))
        if truth[r, q] != ids[k - 1]:  # a bent nucleus: take any of its pixels nearest the centre
            rr, qq = np.nonzero(truth == ids[k - 1])
            j = np.argmin((rr - c[0]) ** 2 + (qq - c[1]) ** 2)
            r, q = rr[j], qq[j]
        if foreground[r, q]:
            markers[r, q] = k
    d = ndimage.gaussian_filter(distance, 1.0)
    return watershed(-d, markers, mask=foreground, connectivity=1)


def scores(pred_fg: np.ndarray, inst: np.ndarray, truth: np.ndarray) -> dict:
    out = evaluate_pair(pred_fg.astype(np.uint8), (truth > 0).astype(np.uint8), instances=False)
    out.update({k: v for k, v in instance_scores(inst, truth).items() if k in ("aji", "pq", "dq", "sq", "f1_object")})
    return {k: out[k] for k in ("f1", "aji", "pq", "dq", "sq", "f1_object")}


def main(argv: list[str] | None = None) -> int:
    args, model, info, settings, folder = held_out_run(__doc__, argv)
    rows: dict[str, dict[str, dict]] = {}
    start = time.perf_counter()
    for stem in VALIDATION:
        rgb = read_array(folder / "images" / f"{stem}.tif")
        truth = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        maps = [raw_maps(model, info, rgb, settings, axes) for axes in FLIPS]
        logits, cue = maps[0]
        fg = logits.argmax(0) > 0
        tta_logits = np.mean([m[0] for m in maps], axis=0)
        tta_cue = np.mean([m[1] for m in maps], axis=0)
        tta_fg = tta_logits.argmax(0) > 0
        rows[stem] = {
            "model": scores(fg, split_nuclei(fg, cue, info), truth),
            "true markers": scores(fg, true_marker_split(fg, cue[0], truth), truth),
            "true foreground": scores(truth > 0, split_nuclei(truth > 0, cue, info), truth),
            "flips x4": scores(tta_fg, split_nuclei(tta_fg, tta_cue, info), truth),
        }
        print(stem, {k: round(v["aji"], 4) for k, v in rows[stem].items()}, flush=True)
    variants = list(next(iter(rows.values())))
    mean = {v: {k: float(np.mean([rows[s][v][k] for s in rows])) for k in rows[VALIDATION[0]][v]} for v in variants}
    record = {"command": "python src_train/experiments/instance_oracle.py " + shlex.join(argv or sys.argv[1:]),
              "model": str(args.model), "images": VALIDATION, "precision": args.precision,
              "seconds": time.perf_counter() - start, "mean": mean, "per_image": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    for v in variants:
        print(f"{v:16s} " + " ".join(f"{k} {x:.4f}" for k, x in mean[v].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
