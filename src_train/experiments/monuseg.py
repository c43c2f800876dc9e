"""The MoNuSeg experiment: diffusion-pretrained vs. scratch at the same fine-tuning budget.

Phases (each resumable: a finished run is recorded in ``<out>/results.jsonl`` and skipped next time,
an interrupted training run continues from its latest checkpoint):

1. ``pretrain``: self-supervised DDPM pretraining (P2-weighted epsilon loss) on UNLABELED images only:
   the 30 MoNuSeg training images (masks never read) + the GlaS unlabeled pool.
2. ``compare``: fine-tune with n in --subsets labelled MoNuSeg training images (a seeded subset of the
   official 30), from the pretrained model and from scratch, for each seed, all with the same steps,
   batch and augmentation (the paper's Case II: pretraining images include the labelled ones).
3. every fine-tuned model is scored on the 14 official test images, WHOLE images, with the same code
   as ``genselfdiff evaluate``: pixel IoU/F1 and HD/HD95 against the binary masks, AJI against the
   instance masks (nuclei split by the distance-transform watershed of core.inference.instances).

    python src_train/experiments/monuseg.py --data ../shared/data --out runs/monuseg \
        --arch tiny --size 128 --pretrain-steps 1500 --finetune-steps 600 --subsets 3 10 30 --seeds 0 1 2

``--summary`` prints the table (mean +- std over seeds) from results.jsonl without training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.allocator import keep_freed_memory  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.network import PRESETS, UNetConfig  # noqa: E402
from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune  # noqa: E402
from napari_genselfdiff.core.training.pretrain import PretrainConfig, pretrain  # noqa: E402


def architecture(name: str, level_attention: bool) -> UNetConfig:
    base = PRESETS[name]
    values = base.to_dict()
    values["level_attention"] = level_attention
    return UNetConfig(**values)


def drive(gen, label: str, log_every: int = 50):
    """Run a training generator, printing a line every ``log_every`` steps; return its result."""
    from recipe import drive as recipe_drive  # the one training-log loop of the experiments

    return recipe_drive(gen, label, log_every)


def evaluate_model(model_path: Path, data: Path, split: dict, tile: int) -> dict:
    """Whole-image scores on the official test images (binary IoU/F1/HD, instance AJI), fp32."""
    from recipe import score  # same folder: one scoring loop for both experiments

    return score(model_path, data / "monuseg" / "test", list(split["test"]), tile)


def done_runs(results: Path) -> dict[str, dict]:
    if not results.exists():
        return {}
    entries = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {entry["run"]: entry for entry in entries}


def claim(run_dir: Path) -> bool:
    """Take a run for this process (several experiment processes can share one --out): False when a
    live process holds it. A claim left by a dead process is taken over (the run resumes)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / ".claim"
    try:
        holder = int(marker.read_text().strip())
    except (OSError, ValueError):
        holder = None
    if holder is not None and holder != os.getpid():
        try:
            os.kill(holder, 0)
            return False
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
    marker.write_text(str(os.getpid()))
    return True


def record(results: Path, entry: dict) -> None:
    with open(results, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")


def print_summary(results: Path, markdown: bool = False) -> None:
    """The table: mean +- std over seeds per (labelled images, init, steps); --markdown for docs/results.md."""
    runs = [r for r in done_runs(results).values() if r.get("phase") == "compare"]
    rows: dict[tuple[int, str, int], list[dict]] = {}
    for r in runs:
        rows.setdefault((r["n_labelled"], r["init"], r["steps"]), []).append(r)
    keys = ("f1", "iou", "aji", "hd95")
    if markdown:
        print("| labelled images | init | steps | seeds | " + " | ".join(k.upper() for k in keys) + " | train s / run |")
        print("| --- | --- | --- | --- | " + " | ".join("---" for _ in keys) + " | --- |")
    else:
        print(f"{'labelled':>8} {'init':>10} {'steps':>5} {'seeds':>5} " + " ".join(f"{k:>15}" for k in keys))
    for (n, init, steps), entries in sorted(rows.items()):
        cells = []
        for k in keys:
            v = np.array([e["mean"][k] for e in entries], float)
            digits = 2 if k == "hd95" else 4
            finite = v[np.isfinite(v)]  # HD95 is undefined for a model that predicts no foreground
            cell = f"{finite.mean():.{digits}f} +- {finite.std():.{digits}f}" if finite.size else "-"
            cells.append(cell + (f" ({finite.size} of {v.size})" if finite.size < v.size else ""))
        seconds = np.mean([e["train_seconds"] for e in entries])
        if markdown:
            print(f"| {n} | {init} | {steps} | {len(entries)} | " + " | ".join(cells) + f" | {seconds:.0f} |")
        else:
            print(f"{n:>8} {init:>10} {steps:>5} {len(entries):>5} " + " ".join(f"{c:>15}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, default=Path("runs/monuseg"))
    p.add_argument("--arch", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--no-level-attention", action="store_true", help="linear attention only at the bottleneck")
    p.add_argument("--size", type=int, default=128, help="patch side (pretraining and fine-tuning)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--pretrain-steps", type=int, default=1500)
    p.add_argument("--finetune-steps", type=int, default=600)
    p.add_argument("--subsets", type=int, nargs="+", default=[3, 10, 30])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--inits", nargs="+", default=["pretrained", "scratch"], choices=["pretrained", "scratch", "model"],
                   help="'model': continue training the fine-tuned model given with --init-model")
    p.add_argument("--init-model", type=Path, default=None, help="a fine-tuned model to continue (--inits model)")
    p.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm (default: none, the paper)")
    p.add_argument("--lr", type=float, default=1e-3, help="fine-tuning peak learning rate (the paper: 1e-4)")
    p.add_argument("--betas", type=float, nargs=2, default=[0.9, 0.999], help="fine-tuning Adam betas (the paper: 0.5 0.999)")
    p.add_argument("--lr-schedule", default="cosine", choices=["constant", "cosine"], help="fine-tuning schedule (the paper: constant)")
    p.add_argument("--warmup", type=int, default=20, help="fine-tuning warm-up steps")
    p.add_argument("--pretrained", type=Path, default=None,
                   help="use this pretrained (noise) model instead of running the pretrain phase")
    p.add_argument("--tile", type=int, default=512, help="inference tile for the test images")
    p.add_argument("--summary", action="store_true", help="only print the table from results.jsonl")
    p.add_argument("--markdown", action="store_true", help="with --summary: a Markdown table")
    args = p.parse_args(argv)
    keep_freed_memory()

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    if args.summary:
        print_summary(results, args.markdown)
        return 0
    monuseg = args.data / "monuseg"
    if not (monuseg / "split.json").is_file():
        print(f"error: {monuseg}/split.json not found; pass --data pointing at the shared data folder.", file=sys.stderr)
        return 2
    split = json.loads((monuseg / "split.json").read_text())
    arch = architecture(args.arch, not args.no_level_attention)
    if "model" in args.inits and (args.init_model is None or not args.init_model.is_file()):
        print("error: --inits model needs --init-model pointing at a fine-tuned model file.", file=sys.stderr)
        return 2
    done = done_runs(results)

    pretrained = args.out / "pretrain" / "model.safetensors"
    if args.pretrained is not None:
        if not args.pretrained.is_file():
            print(f"error: --pretrained {args.pretrained} not found.", file=sys.stderr)
            return 2
        pretrained = args.pretrained
    elif "pretrain" not in done and "pretrained" in args.inits:
        unlabeled = [str(monuseg / "train" / "images"), str(args.data / "glas_unlabeled" / "images")]
        cfg = PretrainConfig(images=unlabeled, out_dir=str(args.out / "pretrain"), arch=arch,
                             patch_size=args.size, stride=args.size // 2, steps=args.pretrain_steps,
                             batch=args.batch, checkpoint_every=100, resume=(args.out / "pretrain").exists())
        start = time.perf_counter()
        path = drive(pretrain(cfg), "pretrain")
        pretrained = Path(path)
        record(results, {"run": "pretrain", "phase": "pretrain", "model": str(pretrained),
                         "steps": args.pretrain_steps, "seconds": time.perf_counter() - start})
    elif "pretrain" in done:
        pretrained = Path(done["pretrain"]["model"])

    train_ids = list(split["train"])
    for n in args.subsets:
        for seed in args.seeds:
            subset = sorted(np.random.default_rng(1000 + seed).permutation(train_ids)[:n].tolist())
            for init in args.inits:
                name = f"n{n}_{init}_s{seed}"
                run_dir = args.out / "runs" / name
                if name in done or name in done_runs(results) or not claim(run_dir):
                    continue
                pairs = []
                for stem in subset:
                    image = read_array(monuseg / "train" / "images" / f"{stem}.tif")
                    mask = (read_array(monuseg / "train" / "masks" / f"{stem}.png") > 0).astype(np.uint8)
                    pairs.append((stem, image, mask))
                cfg = FinetuneConfig(pairs=pairs, out_dir=str(run_dir),
                                     init={"pretrained": str(pretrained), "scratch": "scratch",
                                           "model": str(args.init_model)}[init], arch=arch,
                                     val_fraction=0.0, steps=args.finetune_steps, batch=args.batch,
                                     lr=args.lr, betas=list(args.betas), lr_schedule=args.lr_schedule,
                                     warmup_steps=args.warmup, grad_clip=args.grad_clip,
                                     patch_size=args.size, stride=args.size // 2, seed=seed,
                                     checkpoint_every=100, resume=(run_dir / "checkpoints").exists())
                start = time.perf_counter()
                model_path = Path(drive(finetune(cfg), name))
                train_seconds = time.perf_counter() - start
                summary = evaluate_model(model_path, args.data, split, args.tile)
                record(results, {"run": name, "phase": "compare", "n_labelled": n, "init": init, "seed": seed,
                                 "images": subset, "model": str(model_path), "steps": args.finetune_steps,
                                 "pretrained": str(pretrained) if init == "pretrained" else None,
                                 "init_model": str(args.init_model) if init == "model" else None,
                                 "grad_clip": args.grad_clip,
                                 "arch": arch.to_dict(), "patch_size": args.size, "batch": args.batch, "lr": args.lr,
                                 "betas": list(args.betas), "lr_schedule": args.lr_schedule, "warmup": args.warmup,
                                 "train_seconds": train_seconds, "eval_seconds": summary["seconds"],
                                 "mean": summary["mean"], "per_image": summary["per_image"]})
                print(f"[{name}] test: " + " ".join(f"{k} {v:.4f}" for k, v in summary["mean"].items()
                                                     if isinstance(v, float)), flush=True)
    print_summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
