"""The nucleus-model recipe: one fine-tuning run per call, scored on a VALIDATION split of the MoNuSeg
training images (never the test images), for the ablation table in docs/results.md and the shipped model.

The 30 official training images are split once: the 6 in ``VALIDATION`` (6 organs' worth of the 13
training images that have instance masks, so AJI can be scored) are held out; the other 24 train.
Each run writes ``<out>/<name>/`` (checkpoints, best/last model) and ``docs/results/recipe/<name>.json``
(the command, settings, wall time, and whole-image F1 / IoU / AJI on the 6 validation images).

    python src_train/experiments/recipe.py --name base --widths 24 48 96 192 --blocks 1 --norm batch \\
        --stem-stride 2 --loss dice_ce --size 256 --steps 1200 --lr 2e-3 --stain

``--final`` trains on all 30 images instead (no validation; for the shipped model once the recipe
and the step count are chosen on validation). ``--test`` scores a finished run's model on the 14 test
images (the final report only).
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

from napari_genselfdiff.core.allocator import keep_freed_memory  # noqa: E402
from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, summarize, to_label_image  # noqa: E402
from napari_genselfdiff.core.inference.instances import label_instances  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.progress import Returning  # noqa: E402
from napari_genselfdiff.core.network import UNetConfig  # noqa: E402
from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "docs" / "results" / "recipe"

#: Held-out training images (lung, breast x2, kidney, prostate, colon), all with instance masks.
VALIDATION = [
    "TCGA-21-5784-01Z-00-DX1", "TCGA-A7-A13E-01Z-00-DX1", "TCGA-B0-5698-01Z-00-DX1",
    "TCGA-CH-5767-01Z-00-DX1", "TCGA-E2-A1B5-01Z-00-DX1", "TCGA-NH-A8F7-01A-01-TS1",
]


def rescale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """An RGB image resampled by ``scale`` (area-averaged when shrinking), uint8."""
    if scale == 1:
        return image
    from skimage.transform import rescale

    out = rescale(image, scale, channel_axis=-1, order=1, anti_aliasing=scale < 1, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A binary mask resampled to ``shape`` (linear interpolation of the 0/1 mask, cut at 0.5)."""
    if mask.shape == tuple(shape):
        return mask
    from skimage.transform import resize

    return (resize(mask.astype(np.float32), shape, order=1, anti_aliasing=False) >= 0.5).astype(np.uint8)


def load_pair(folder: Path, stem: str, scale: float = 1.0) -> tuple[str, np.ndarray, np.ndarray]:
    """An image and its binary mask; ``scale`` < 1 resamples both (e.g. 0.5: 0.25 -> 0.5 um/px)."""
    image = rescale_image(read_array(folder / "images" / f"{stem}.tif"), scale)
    mask = (read_array(folder / "masks" / f"{stem}.png") > 0).astype(np.uint8)
    return stem, image, resize_mask(mask, image.shape[:2])


def score(model_path: Path, folder: Path, stems: list[str], tile: int = 512, scale: float = 1.0) -> dict:
    """Whole-image pixel F1/IoU (binary masks) and AJI (instance masks) of a model on ``stems``.

    ``scale`` != 1: each image is resampled by ``scale`` before segmentation and the labels are mapped
    back to the image's own pixels (linear interpolation of the mask, cut at 0.5), so the scores are
    always against the full-resolution annotations.
    """
    model, info = load_model(model_path)
    per_image = {}
    start = time.perf_counter()
    for stem in stems:
        rgb = read_array(folder / "images" / f"{stem}.tif")
        result = segment(model, info, rescale_image(rgb, scale), InferenceSettings(tile=tile, device="auto", precision="fp32"))
        fg = resize_mask(np.asarray(result.labels) > 0, rgb.shape[:2]) > 0
        gt_inst = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        scores = evaluate_pair(fg.astype(np.uint8), (gt_inst > 0).astype(np.uint8), instances=False)
        scores["aji"] = evaluate_pair(label_instances(fg), gt_inst, instances=True)["aji"]
        per_image[stem] = scores
    summary = summarize(per_image)
    summary["seconds"] = time.perf_counter() - start
    return summary


def drive(gen, label: str, log_every: int = 25):
    start = time.perf_counter()
    events = Returning(gen)
    for event in events:
        if event.kind == "step" and (event.step % log_every == 0 or event.step == event.total_steps):
            print(f"[{label}] step {event.step}/{event.total_steps} loss {event.loss:.4f} "
                  f"{event.samples_per_s or 0:.2f} samples/s eta {event.eta_s or 0:.0f} s", flush=True)
        elif event.kind in ("start", "validation", "cancelled"):
            print(f"[{label}] {event.kind}: {event.message} {event.metrics or ''}", flush=True)
    print(f"[{label}] finished in {time.perf_counter() - start:.0f} s -> {events.value}", flush=True)
    return events.value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "recipe")
    p.add_argument("--widths", type=int, nargs="+", default=[24, 48, 96, 192])
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--norm", default="batch", choices=["group", "batch"])
    p.add_argument("--stem-stride", type=int, default=2, choices=[1, 2])
    p.add_argument("--level-attention", action="store_true")
    p.add_argument("--loss", default="dice_ce", choices=["dice_ce", "ss_focal"])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--stain", action="store_true", help="HED stain jitter")
    p.add_argument("--init", default="scratch", help="a pretrained model file, or scratch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0,
                   help="resample images by this factor for training and inference (0.5: MoNuSeg's 0.25 um/px "
                        "-> 0.5 um/px); scores are always against the full-resolution masks")
    p.add_argument("--timestep", type=int, default=None,
                   help="timestep index the network is fine-tuned and called at (default: the init model's, 0)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--validate-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--subset", type=int, default=None,
                   help="train on this many of the 24 training images (a subset drawn with --seed)")
    p.add_argument("--final", action="store_true", help="train on all 30 images (no validation)")
    p.add_argument("--test", action="store_true", help="only score the run's model on the 14 test images")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    monuseg = args.data / "monuseg"
    if not (monuseg / "split.json").is_file():
        print(f"error: {monuseg}/split.json not found; pass --data.", file=sys.stderr)
        return 2
    split = json.loads((monuseg / "split.json").read_text())
    run_dir = args.out / args.name
    record_path = RESULTS / f"{args.name}.json"
    if args.test:
        record = json.loads(record_path.read_text())
        model_path = Path(record["model"])
        record["test"] = score(model_path, monuseg / "test", list(split["test"]),
                               scale=record["settings"].get("scale", 1.0))
        record_path.write_text(json.dumps(record, indent=1))
        print(json.dumps(record["test"]["mean"], indent=1))
        return 0

    train_stems = [s for s in split["train"] if args.final or s not in VALIDATION]
    if args.subset:
        train_stems = sorted(np.random.default_rng(1000 + args.seed).permutation(train_stems)[: args.subset].tolist())
    pairs = [load_pair(monuseg / "train", s, args.scale) for s in train_stems]
    val_pairs = None if args.final else [load_pair(monuseg / "train", s, args.scale) for s in VALIDATION]
    arch = UNetConfig(widths=tuple(args.widths), blocks_per_level=args.blocks, norm=args.norm,
                      stem_stride=args.stem_stride, level_attention=args.level_attention,
                      attention_dim_head=16)
    cfg = FinetuneConfig(
        pairs=pairs, val_pairs=val_pairs, val_fraction=0.0, out_dir=str(run_dir), init=args.init, arch=arch,
        steps=args.steps, batch=args.batch, lr=args.lr, betas=[0.9, 0.999], lr_schedule="cosine",
        warmup_steps=args.warmup, grad_clip=1.0, patch_size=args.size, stride=args.size // 4, seed=args.seed,
        loss=args.loss, stain_jitter=args.stain, validate_every=0 if args.final else args.validate_every,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=1, precision="fp32",
        resume=(run_dir / "checkpoints").exists(), val_tile=512, timestep=args.timestep,
    )
    start = time.perf_counter()
    model_path = Path(drive(finetune(cfg), args.name))
    seconds = time.perf_counter() - start
    record = {"name": args.name, "command": "python src_train/experiments/recipe.py " + shlex.join(argv or sys.argv[1:]),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "architecture": arch.to_dict(), "train_images": train_stems, "model": str(model_path),
              "train_seconds_this_call": seconds, "threads": args.threads, "cpu_count": os.cpu_count()}
    if not args.final:
        record["validation"] = score(model_path, monuseg / "train", VALIDATION, scale=args.scale)
        print(f"[{args.name}] validation: " + " ".join(f"{k} {v:.4f}" for k, v in record["validation"]["mean"].items()
                                                  if isinstance(v, float)), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
