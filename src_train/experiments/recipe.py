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
from napari_genselfdiff.core.inference import InferenceSettings, segment_progressive  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, summarize, to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.network import UNetConfig  # noqa: E402
from napari_genselfdiff.core.progress import Returning  # noqa: E402
from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune  # noqa: E402
from src_train.experiments.organs import ORGANS  # noqa: E402

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


def resize_instances(instances: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Instance ids resampled to ``shape`` by nearest neighbour."""
    if instances.shape == tuple(shape):
        return instances
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * instances.shape[0] / shape[0]).astype(np.intp), instances.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * instances.shape[1] / shape[1]).astype(np.intp), instances.shape[1] - 1)
    return instances[np.ix_(rows, cols)]


def score(model_path: Path, folder: Path, stems: list[str], tile: int = 512, scale: float = 1.0,
          precision: str = "fp32") -> dict:
    """Whole-image pixel F1/IoU (binary masks) and AJI / PQ (instance masks) of a model on ``stems``.

    Instances are the model's own (``segment(..., instances=True)``: the watershed for a binary
    output, the cue's splitting for an instance-aware one), timed apart as ``postprocess_seconds``.
    ``scale`` != 1: each image is resampled by ``scale`` before segmentation (e.g. 0.5: a 20x scan
    of the same tissue, segmented as given) and labels and instances are mapped back to the image's own
    pixels, so the scores are always against the full-resolution annotations.
    """
    try:
        from napari_genselfdiff.core.metrics import instance_scores
    except ImportError:  # before PQ existed: AJI only
        def instance_scores(pred, gt):
            return {"aji": evaluate_pair(pred, gt, instances=True)["aji"]}

    model, info = load_model(model_path)
    per_image = {}
    start = time.perf_counter()
    post = 0.0
    settings = InferenceSettings(tile=tile, device="auto", precision=precision, instances=True)
    for stem in stems:
        rgb = read_array(folder / "images" / f"{stem}.tif")
        events = Returning(segment_progressive(model, info, rescale_image(rgb, scale), settings))
        t_post = None
        for event in events:
            if event.get("stage") == "instances" and event["done"] == 0:
                t_post = time.perf_counter()
        post += time.perf_counter() - t_post
        result = events.value
        fg = resize_mask(np.asarray(result.labels) > 0, rgb.shape[:2]) > 0
        inst = resize_instances(np.asarray(result.instances), rgb.shape[:2])
        gt_inst = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png"))
        scores = evaluate_pair(fg.astype(np.uint8), (gt_inst > 0).astype(np.uint8), instances=False)
        scores.update({k: v for k, v in instance_scores(inst, gt_inst).items() if k in ("aji", "pq", "dq", "sq", "f1_object")})
        per_image[stem] = scores
    summary = summarize(per_image)
    summary["seconds"] = time.perf_counter() - start
    summary["postprocess_seconds"] = post
    summary["output"] = info.output
    return summary


def grown_init(init: Path, run_dir: Path, widths: list[int] | None, blocks: int | None) -> Path:
    """``init`` grown wider/deeper (:func:`core.network.grow.grow`), written once to ``run_dir`` (a resumed
    run finds it there), with the largest output change the growth caused on a random batch printed."""
    import dataclasses

    import torch

    from napari_genselfdiff.core.model_files.store import save_model
    from napari_genselfdiff.core.network.grow import grow

    path = run_dir / "grown_init.safetensors"
    if path.is_file():
        return path
    model, info = load_model(init)
    check = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    grown, difference = grow(model, widths, blocks, check=check)
    provenance = {**info.provenance, "grown": {"from": str(init), "widths": list(grown.config.widths),
                                                "blocks_per_level": grown.config.blocks_per_level,
                                                "largest_output_change": difference}}
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(path, grown, dataclasses.replace(info, architecture=grown.config, provenance=provenance, path=None))
    print(f"grown {tuple(model.config.widths)} x{model.config.blocks_per_level} -> {tuple(grown.config.widths)} "
          f"x{grown.config.blocks_per_level}: largest output change {difference:.2e} -> {path}", flush=True)
    return path


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
    p.add_argument("--stain-strength", type=float, default=1.0,
                   help="the stain jitter's scale and shift as a multiple of their defaults (0.25, 0.04)")
    p.add_argument("--elastic", action="store_true",
                   help="elastic deformation of every patch (FinetuneConfig.elastic: U-Net's 3 x 3 lattice, 10 px)")
    p.add_argument("--init", default="scratch", help="a pretrained model file, or scratch")
    p.add_argument("--grow-widths", type=int, nargs="+", default=None, metavar="W",
                   help="grow the --init model to these widths first, keeping its function "
                        "(core/network/grow.py; exact when the deepest width is unchanged)")
    p.add_argument("--grow-blocks", type=int, default=None, metavar="N",
                   help="grow the --init model to N residual blocks per level first (added blocks start as identities)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0,
                   help="resample images by this factor for training and inference (0.5: MoNuSeg's 0.25 um/px "
                        "-> 0.5 um/px); scores are always against the full-resolution masks")
    p.add_argument("--timestep", type=int, default=None,
                   help="timestep index the network is fine-tuned and called at (default: the init model's, 0)")
    p.add_argument("--output", default=None, choices=["classes", "contour", "distance", "hover"],
                   help="the head's output kind (default: the init model's; classes from scratch)")
    p.add_argument("--cue-weight", type=float, default=1.0,
                   help="weight of the distance/direction map's loss against the class loss (FinetuneConfig.cue_weight)")
    p.add_argument("--scale-range", type=float, nargs=2, default=None, metavar="F",
                   help="random rescaling of training patches by a factor in [LOW, HIGH] (log-uniform)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                   help="training precision (bf16: native on AVX-512 bf16 CPUs and GPUs)")
    p.add_argument("--val-scales", type=float, nargs="+", default=[1.0, 0.5],
                   help="score the held-out images at these scales (0.5: downsampled 2x, segmented as given)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--validate-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--subset", type=int, default=None,
                   help="train on this many of the 24 training images (a subset drawn with --seed)")
    p.add_argument("--final", action="store_true", help="train on all 30 images (no validation)")
    p.add_argument("--leave-out", default=None, choices=sorted(ORGANS),
                   help="train on all 30 images but this organ's (no validation): the never-seen-this-organ "
                        "base model of the correction-loop replay (benchmarks/correction_replay.py)")
    p.add_argument("--test", action="store_true", help="only score the run's model on the 14 test images")
    p.add_argument("--rescore", action="store_true",
                   help="only score the run's model again on the held-out images (at --val-scales)")
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
    if args.rescore:
        record = json.loads(record_path.read_text())
        scale = record["settings"].get("scale", 1.0)
        for s in args.val_scales:
            key = "validation" if s == 1.0 else f"validation_x{s:g}"
            record[key] = score(Path(record["model"]), monuseg / "train", VALIDATION, scale=scale * s)
            print(f"[{args.name}] {key}: " + " ".join(f"{k} {v:.4f}" for k, v in record[key]["mean"].items()
                                                    if isinstance(v, float)), flush=True)
        record_path.write_text(json.dumps(record, indent=1))
        return 0
    if args.test:
        record = json.loads(record_path.read_text())
        model_path = Path(record["model"])
        record["test"] = score(model_path, monuseg / "test", list(split["test"]),
                               scale=record["settings"].get("scale", 1.0))
        record_path.write_text(json.dumps(record, indent=1))
        print(json.dumps(record["test"]["mean"], indent=1))
        return 0

    if args.leave_out:
        args.final = True
    train_stems = [s for s in split["train"] if (args.final or s not in VALIDATION)
                   and s not in ORGANS.get(args.leave_out, ())]
    if args.subset:
        train_stems = sorted(np.random.default_rng(1000 + args.seed).permutation(train_stems)[: args.subset].tolist())
    pairs = [load_pair(monuseg / "train", s, args.scale) for s in train_stems]
    instances = {s: resize_instances(to_label_image(read_array(monuseg / "train" / "instance_masks" / f"{s}.png")),
                                     pairs[k][1].shape[:2]).astype(np.int32)
                 for k, s in enumerate(train_stems)}
    val_pairs = None if args.final else [load_pair(monuseg / "train", s, args.scale) for s in VALIDATION]
    init = args.init  # the record keeps --init as given; the grown file sits in the run folder
    if args.grow_widths or args.grow_blocks:
        init = str(grown_init(Path(args.init), run_dir, args.grow_widths, args.grow_blocks))
    arch = UNetConfig(widths=tuple(args.widths), blocks_per_level=args.blocks, norm=args.norm,
                      stem_stride=args.stem_stride, level_attention=args.level_attention,
                      attention_dim_head=16)
    cfg = FinetuneConfig(
        pairs=pairs, val_pairs=val_pairs, val_fraction=0.0, out_dir=str(run_dir), init=init, arch=arch,
        steps=args.steps, batch=args.batch, lr=args.lr, betas=[0.9, 0.999], lr_schedule="cosine",
        warmup_steps=args.warmup, grad_clip=1.0, patch_size=args.size, stride=args.size // 4, seed=args.seed,
        loss=args.loss, stain_jitter=args.stain, stain_strength=args.stain_strength, validate_every=0 if args.final else args.validate_every,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=1, precision=args.precision,
        resume=(run_dir / "checkpoints").exists(), val_tile=512, timestep=args.timestep,
        output=args.output, scale_range=args.scale_range, instances=instances, cue_weight=args.cue_weight,
        elastic=args.elastic,
    )
    start = time.perf_counter()
    model_path = Path(drive(finetune(cfg), args.name))
    seconds = time.perf_counter() - start
    record = {"name": args.name, "command": "python src_train/experiments/recipe.py " + shlex.join(argv or sys.argv[1:]),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "architecture": arch.to_dict(), "train_images": train_stems, "model": str(model_path),
              "train_seconds_this_call": seconds, "threads": args.threads, "cpu_count": os.cpu_count()}
    if not args.final:
        for s in args.val_scales:
            key = "validation" if s == 1.0 else f"validation_x{s:g}"
            record[key] = score(model_path, monuseg / "train", VALIDATION, scale=args.scale * s)
            print(f"[{args.name}] {key}: " + " ".join(f"{k} {v:.4f}" for k, v in record[key]["mean"].items()
                                                    if isinstance(v, float)), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
