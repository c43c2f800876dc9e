"""The gland-model recipe (GlaS, Sirinukunwattana et al. MedIA 2017): one fine-tuning run per call,
scored on a VALIDATION split of the 85 GlaS training images (never testA / testB), and ``--test`` for
the final report on testA and testB, apart.

The 85 official training images are split once by patient (splits.csv): the 16 images of patients 3,
5 and 6 (8 benign, 8 malignant) are held out for validation, the other 69 train. GlaS images are 20x
(about 0.62 um/px) and are used as they are; glands are class 1, and gland INSTANCES are made the way
``genselfdiff segment --model glands --instances`` makes them: the connected components of the gland
mask (no watershed split), components under ``GLAND_MIN_SIZE`` pixels removed (core.inference.instances
with the bundled gland model's postprocess settings, written into the model file by bundle_glands.py).

    python src_train/experiments/glas.py --name glas_nuclei_init --init napari_genselfdiff/models/default_nuclei.safetensors \\
        --steps 900 --precision bf16

Each run writes ``<out>/<name>/`` (checkpoints every --checkpoint-every steps: resumable, rerun the same
command) and ``docs/results/glas/<name>.json`` (command, settings, wall time, validation scores: pixel
F1/IoU, GlaS object F1 / object Dice / object Hausdorff, per-image means). ``--final`` trains on all 85
images (no validation). ``--test`` scores a finished run's model on testA and testB (the report only).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from recipe import drive  # noqa: E402  (the one training-log loop of the experiments)

from napari_genselfdiff.core.allocator import keep_freed_memory  # noqa: E402
from napari_genselfdiff.core.inference import InferenceSettings  # noqa: E402
from napari_genselfdiff.core.inference.instances import label_instances  # noqa: E402
from napari_genselfdiff.core.inference.resolution import Resolution, segment_at_resolution  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.losses.instance_aware import CUE_WEIGHT  # noqa: E402
from napari_genselfdiff.core.metrics import glas_scores  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, summarize, to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.network import UNetConfig  # noqa: E402
from napari_genselfdiff.core.progress import Returning  # noqa: E402
from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results" / "glas"

#: Patients of the GlaS training set held out for validation (16 images: 8 benign, 8 malignant).
VALIDATION_PATIENTS = {"3", "5", "6"}

#: GlaS resolution: 20x, 0.620 um/px (Sirinukunwattana et al. 2017).
GLAS_MPP = 0.62

#: Gland instances: connected components of the mask, no watershed, at least this many pixels.
GLAND_MIN_SIZE = 200
GLAND_POSTPROCESS = {"split_touching": False, "min_size": GLAND_MIN_SIZE, "min_distance": 0.0, "h": 0.0}


def read_split(glas: Path) -> dict[str, list[tuple[str, str]]]:
    """{"train" | "testA" | "testB": [(name, patient), ...]} from splits.csv, names in numeric order."""
    rows: dict[str, list[tuple[str, str]]] = {}
    with open(glas / "splits.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["split"], []).append((row["name"], row["patient_id"]))
    return {k: sorted(v, key=lambda r: int(r[0].rsplit("_", 1)[1])) for k, v in rows.items()}


def load_pair(glas: Path, name: str, scale: float = 1.0) -> tuple[str, np.ndarray, np.ndarray]:
    """An image and its binary gland mask; ``scale`` < 1 resamples both (0.5: 0.62 -> 1.24 um/px)."""
    from recipe import rescale_image, resize_mask

    image = rescale_image(read_array(glas / "images" / f"{name}.jpg"), scale)
    mask = (read_array(glas / "masks" / f"{name}.png") > 0).astype(np.uint8)
    return name, image, resize_mask(mask, image.shape[:2])


def load_gland_instances(glas: Path, name: str, shape: tuple[int, int]) -> np.ndarray:
    """The mask's gland instance ids (GlaS masks carry one id per gland), resampled to ``shape``."""
    from recipe import resize_instances

    return resize_instances(to_label_image(read_array(glas / "masks" / f"{name}.png")), shape).astype(np.int32)


def cue_postprocess(kind: str, scale: float) -> dict:
    """The gland splitting of an instance-aware output before tune_glands.py chooses one, in the model's
    pixels at ``scale``: glands under GLAND_MIN_SIZE image pixels (0.62 um/px) dropped; a distance map
    split at its h-maxima, a contour output at its interior's cores of at least a quarter of that size."""
    min_size = int(round(GLAND_MIN_SIZE * scale * scale))
    if kind == "contour":
        return {"instances": {"interior_threshold": 0.5, "min_marker": max(min_size // 4, 1), "min_size": min_size}}
    return {"instances": {"h": 0.15, "smooth": 1.0, "min_size": min_size}}


def gland_instances(foreground: np.ndarray) -> np.ndarray:
    """Gland instances of a binary gland mask, as the bundled gland model makes them."""
    return label_instances(foreground, **GLAND_POSTPROCESS)


def score(model_path: Path, glas: Path, names: list[str], precision: str = "fp32", tile: int = 512,
          scale: float = 1.0) -> dict:
    """Per-image pixel F1/IoU, GlaS object F1 / Dice / Hausdorff, AJI / PQ of a model on ``names``
    (summarised per name prefix too: testA and testB apart), whole images in their own pixels.

    The model works at ``GLAS_MPP / scale`` um/px; each image, given as GlaS's 0.62 um/px, goes through
    the product's resolution path (resampled to the model's, labels mapped back)."""
    model, info = load_model(model_path)
    info.mpp = GLAS_MPP / scale
    own_split = info.output != "classes"  # an instance-aware output splits glands itself
    if own_split and not (info.postprocess or {}).get("instances"):
        info.postprocess = cue_postprocess(info.output, scale)
    settings = InferenceSettings(tile=tile, device="auto", precision=precision, instances=own_split)
    per_image = {}
    start = time.perf_counter()
    for name in names:
        rgb = read_array(glas / "images" / f"{name}.jpg")
        result = Returning(segment_at_resolution(model, info, rgb, settings, Resolution(GLAS_MPP, "given", "GlaS")))
        for _ in result:
            pass
        fg = np.asarray(result.value[0].labels) > 0
        pred = np.asarray(result.value[0].instances) if own_split else gland_instances(fg)
        gt = to_label_image(read_array(glas / "masks" / f"{name}.png"))
        scores = evaluate_pair(pred, gt, instances=True)
        scores.update(glas_scores(pred, gt))
        per_image[name] = scores
    summary = summarize(per_image, by_prefix=True)
    summary["seconds"] = time.perf_counter() - start
    return summary


def segment_held_out(model, info, rgb: np.ndarray, scale: float, *, cue: bool = True,
                     flips: bool = False) -> tuple[np.ndarray, np.ndarray | None, float]:
    """One GlaS image through a gland model as ``tune_glands.py`` scores it: resampled to the model's
    resolution (``scale`` of GlaS's pixels), segmented in fp32, nothing split yet.

    Returns (gland mask in the model's pixels, the model's cue (h, w) or None, the resampling factor)."""
    from napari_genselfdiff.core.inference import segment_progressive
    from napari_genselfdiff.core.inference.resolution import ResampledView, resample_factor
    from napari_genselfdiff.core.progress import run_generator

    f = resample_factor(GLAS_MPP, GLAS_MPP / scale)
    rgb = np.ascontiguousarray(rgb[..., :3])
    source = rgb if f == 1.0 else ResampledView(rgb, f)
    maps = np.zeros((1,) + tuple(source.shape[:2]), np.float32) if cue else None
    result = run_generator(segment_progressive(model, info, source, InferenceSettings(
        tile=512, device="cpu", precision="fp32", flips=flips), name="glas", cue_out=maps))
    return np.asarray(result.labels) > 0, (maps[0] if cue else None), f


def distance_glands(model, info, rgb: np.ndarray, params: dict, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A distance-map gland model's glands on one GlaS image (:func:`segment_held_out`, then split by the map
    with ``params``, split_by_distance's keywords).

    Returns (glands in the model's pixels, the same mapped back to the image's pixels, the map (h, w))."""
    from napari_genselfdiff.core.inference.instances import split_by_distance
    from napari_genselfdiff.core.inference.resolution import map_back

    foreground, cue, f = segment_held_out(model, info, rgb, scale)
    glands = split_by_distance(foreground, cue, **params)
    return glands, map_back(glands, (0, rgb.shape[0]), (0, rgb.shape[1]), f), cue


def _print(label: str, summary: dict) -> None:
    for prefix, group in summary.get("groups", {}).items():
        print(f"[{label}] {prefix} (n={group['n']}): " + " ".join(
            f"{k} {v:.4f}" for k, v in group["mean"].items() if isinstance(v, float)), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "glas")
    p.add_argument("--widths", type=int, nargs="+", default=[24, 48, 96, 192])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--scale", type=float, default=1.0,
                   help="train and segment at this fraction of GlaS's pixels (0.5: 1.24 um/px, 4x the context per patch)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--loss", default="dice_ce", choices=["dice_ce", "ss_focal"])
    p.add_argument("--scale-range", type=float, nargs=2, default=None, metavar="F",
                   help="also rescale each training patch by a factor drawn log-uniformly from LOW HIGH "
                        "(FinetuneConfig.scale_range; default: none)")
    p.add_argument("--init", default="scratch", help="a model file (e.g. the bundled nuclei model), or scratch")
    p.add_argument("--output", default=None, choices=["classes", "distance", "contour"],
                   help="the head's output kind (default: the init model's); distance: learned gland distance "
                        "maps split touching glands; contour: background / interior / contour classes, glands "
                        "grown from the interior's cores (targets from the masks' gland ids)")
    p.add_argument("--cue-weight", type=float, default=CUE_WEIGHT,
                   help=f"weight of the distance map's loss (FinetuneConfig.cue_weight; default {CUE_WEIGHT:g})")
    p.add_argument("--elastic", action="store_true",
                   help="elastic deformation of every training patch (Augmentation.elastic; default: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset", type=int, default=None, help="train on this many of the 69 (drawn with --seed)")
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "auto"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--validate-every", type=int, default=150)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--final", action="store_true", help="train on all 85 training images (no validation)")
    p.add_argument("--test", action="store_true", help="only score the run's model on testA and testB")
    p.add_argument("--model", type=Path, default=None, help="with --test: score this model file instead")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    glas = args.data / "glas"
    if not (glas / "splits.csv").is_file():
        print(f"error: {glas}/splits.csv not found; pass --data.", file=sys.stderr)
        return 2
    split = read_split(glas)
    run_dir = args.out / args.name
    record_path = RESULTS / f"{args.name}.json"
    if args.test:
        record = json.loads(record_path.read_text()) if record_path.is_file() else {"name": args.name}
        model_path = args.model or Path(record["model"])
        names = [n for n, _ in split["testA"]] + [n for n, _ in split["testB"]]
        scale = args.scale if args.model else record.get("settings", {}).get("scale", args.scale)
        record["test"] = score(model_path, glas, names, scale=scale)
        record["test_command"] = "python src_train/experiments/glas.py " + shlex.join(argv or sys.argv[1:])
        record["test_model"] = str(model_path)
        RESULTS.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=1))
        _print(args.name, record["test"])
        return 0

    train = [n for n, patient in split["train"] if args.final or patient not in VALIDATION_PATIENTS]
    val = [n for n, patient in split["train"] if patient in VALIDATION_PATIENTS]
    if args.subset:
        train = sorted(np.random.default_rng(1000 + args.seed).permutation(train)[: args.subset].tolist(),
                       key=lambda n: int(n.rsplit("_", 1)[1]))
    pairs = [load_pair(glas, n, args.scale) for n in train]
    instances = {n: load_gland_instances(glas, n, pairs[k][1].shape[:2]) for k, n in enumerate(train)}
    val_pairs = None if args.final else [load_pair(glas, n, args.scale) for n in val]
    # From scratch: the nuclei preset's network (attention at the bottleneck only), the network every model
    # file start has, so that scratch and the pretrained starts differ in their weights alone. (Until
    # 2026-12-07 scratch had attention at every level, the UNetConfig default: those records are "scratch_la".)
    arch = UNetConfig(widths=tuple(args.widths), blocks_per_level=1, norm="batch", stem_stride=2,
                      level_attention=False, attention_dim_head=16)
    cfg = FinetuneConfig(
        pairs=pairs, val_pairs=val_pairs, val_fraction=0.0, out_dir=str(run_dir), init=args.init, arch=arch,
        classes=["background", "gland"], steps=args.steps, batch=args.batch, lr=args.lr, betas=[0.9, 0.999],
        lr_schedule="cosine", warmup_steps=args.warmup, grad_clip=1.0, patch_size=args.size,
        stride=args.size // 4, seed=args.seed, loss=args.loss, stain_jitter=True,
        validate_every=0 if args.final else args.validate_every, checkpoint_every=args.checkpoint_every,
        keep_checkpoints=1, precision=args.precision, resume=(run_dir / "checkpoints").exists(), val_tile=512,
        output=args.output, instances=instances, scale_range=args.scale_range, elastic=args.elastic,
        cue_weight=args.cue_weight,
    )
    start = time.perf_counter()
    model_path = Path(drive(finetune(cfg), args.name))
    seconds = time.perf_counter() - start
    record = {"name": args.name, "command": "python src_train/experiments/glas.py " + shlex.join(argv or sys.argv[1:]),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "architecture": arch.to_dict(), "train_images": train, "validation_images": [] if args.final else val,
              "model": str(model_path), "train_seconds_this_call": seconds, "threads": args.threads,
              "cpu_count": os.cpu_count()}
    if not args.final:
        record["validation"] = score(model_path, glas, val, scale=args.scale)
        _print(args.name, record["validation"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
