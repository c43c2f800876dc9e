"""Does "what to correct next" help? A simulated pathologist corrects k fields per round, chosen by
the uncertainty ranking or at random; after each round the model is fine-tuned for a short fixed
budget on the partial annotations so far, and scored on the test images (issue 13).

The simulated pathologist is the ground truth of the training images: "correcting" a field marks it
as a corrected region whose labels are the ground truth there; everything else stays unknown and is
left out of the loss (partial annotations, :mod:`napari_genselfdiff.core.annotations.regions`). Each
round, for strategy

- ``ranked``: every training image is segmented with the current model, its fields ranked by mean
  uncertainty (normalised entropy, :mod:`napari_genselfdiff.core.inference.uncertainty`), and the k
  most uncertain fields not yet corrected over all images are corrected;
- ``random``: k fields not yet corrected, drawn uniformly (seeded).

Fine-tuning continues the current model (``--init``: a pretrained or a fine-tuned model, or scratch)
for ``--steps`` steps per round. After every round the model segments the test images and the
foreground F1 and AJI (against instance masks when given) are recorded. One JSON line per
(strategy, seed, round) goes to ``<out>/results.jsonl``, and ``<out>/summary.md`` tabulates F1/AJI
against the number of corrected fields, mean and spread over seeds.

    python src_train/experiments/active_learning.py \\
        --images ../shared/data/monuseg/train/images --masks ../shared/data/monuseg/train/masks \\
        --test-images ../shared/data/monuseg/test/images --test-masks ../shared/data/monuseg/test/masks \\
        --init runs/pre/pretrained.safetensors --k 4 --rounds 6 --steps 150 --seeds 0 1 2 --out runs/al

The full experiment is long on a CPU (strategies x seeds x rounds fine-tunings plus a segmentation
of every training image per ranked round); ``tests/cli/test_active_learning.py`` runs it at a tiny scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.data.sources import load_pairs  # noqa: E402
from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.inference.instances import label_instances  # noqa: E402
from napari_genselfdiff.core.inference.uncertainty import Field, rank_fields, segment_with_uncertainty  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair  # noqa: E402
from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.progress import run_generator  # noqa: E402
from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune  # noqa: E402

STRATEGIES = ("ranked", "random")


def candidate_fields(shape: tuple[int, int], size: int, known: np.ndarray) -> list[Field]:
    """Fields of an image not yet (mostly) corrected, in reading order (score 0)."""
    return rank_fields(np.zeros(shape, np.float32), size, known=known)


def choose_fields(strategy: str, k: int, images, known, *, size: int, model_path: Path | None,
                  settings: InferenceSettings, rng: np.random.Generator) -> list[tuple[int, Field]]:
    """The k (image index, field) pairs to correct this round."""
    if strategy == "random" or model_path is None:  # no model yet: nothing to rank by
        pool = [(i, f) for i, image in enumerate(images) for f in candidate_fields(image.shape[:2], size, known[i])]
        order = rng.permutation(len(pool))[:k]
        return [pool[j] for j in order]
    if strategy != "ranked":
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    network, info = load_model(model_path)
    pool = []
    for i, image in enumerate(images):
        _, umap = run_generator(segment_with_uncertainty(network, info, image, settings))
        pool += [(i, f) for f in rank_fields(umap, size, known=known[i])]
    pool.sort(key=lambda item: -item[1].score)
    return pool[:k]


def score(model_path: Path, images, gts, settings: InferenceSettings, instance_gts=None) -> dict[str, float]:
    """Mean foreground F1 and IoU of the model on the test images, and AJI: against the instance masks
    (nuclei split as the CLI's --instances does) when ``instance_gts`` is given, else the binary masks'."""
    network, info = load_model(model_path)
    rows = []
    for j, (image, gt) in enumerate(zip(images, gts)):
        fg = np.asarray(segment(network, info, image, settings).labels) > 0
        row = evaluate_pair(fg.astype(np.uint8), (gt > 0).astype(np.uint8), instances=False)
        if instance_gts is not None:
            row["aji"] = evaluate_pair(label_instances(fg), instance_gts[j], instances=True)["aji"]
        rows.append(row)
    return {key: float(np.mean([r[key] for r in rows])) for key in ("f1", "iou", "aji")}


def run_strategy(*, strategy: str, seed: int, train, test, init: str, k: int, rounds: int, steps: int,
                 field: int, out: Path, arch="tiny", patch: int = 256, batch: int = 8, lr: float = 1e-4,
                 tile: int = 512, device: str = "auto", precision: str = "auto", recipe: dict | None = None,
                 annotated=(), log=print) -> list[dict]:
    """One strategy, one seed: ``rounds`` rounds of correct-k-fields + fine-tune + score; a record per round.

    ``recipe``: further :class:`FinetuneConfig` settings for every round (loss, stain jitter, schedule...).
    ``test``: ``(images, masks)`` or ``(images, masks, instance_masks)``.
    ``annotated``: ``(name, image, mask)`` images the lab had already annotated in full (e.g. those the
    starting model was trained on); they stay in every round's training set beside the corrected fields.
    """
    names, images, gts = train
    test_images, test_gts = test[0], test[1]
    test_instances = test[2] if len(test) > 2 else None
    rng = np.random.default_rng([seed, STRATEGIES.index(strategy)])
    known = [np.zeros(image.shape[:2], bool) for image in images]
    settings = InferenceSettings(tile=tile, overlap=32, device=device, precision=precision)
    model_path: Path | None = None if init == "scratch" else Path(init)
    records = []
    corrected = 0
    for round_ in range(1, rounds + 1):
        t0 = time.perf_counter()
        chosen = choose_fields(strategy, k, images, known, size=field, model_path=model_path, settings=settings,
                               rng=rng)
        for i, f in chosen:
            known[i][f.slices()] = True
        corrected += len(chosen)
        pairs = [(names[i], images[i], gts[i], known[i]) for i in range(len(images)) if known[i].any()]
        pairs += [(name, image, gt, np.ones(gt.shape[:2], bool)) for name, image, gt in annotated]
        run_dir = out / f"{strategy}-seed{seed}" / f"round{round_:02d}"
        cfg = FinetuneConfig(
            pairs=pairs, out_dir=str(run_dir), init=str(model_path) if model_path else "scratch", arch=arch,
            steps=steps, batch=batch, patch_size=patch, stride=max(16, patch // 4), lr=lr, val_fraction=0,
            validate_every=0, checkpoint_every=0, seed=seed, device=device, precision=precision,
            **(recipe or {}),
        )
        model_path = run_generator(finetune(cfg))
        scores = score(model_path, test_images, test_gts, settings, test_instances)
        record = {
            "strategy": strategy, "seed": seed, "round": round_, "fields": corrected,
            "corrected_pixels": int(sum(m.sum() for m in known)),
            "chosen": [{"image": names[i], **{k_: v for k_, v in asdict(f).items()}} for i, f in chosen],
            **scores, "model": str(model_path), "seconds": round(time.perf_counter() - t0, 1),
        }
        records.append(record)
        log(f"{strategy} seed {seed} round {round_}: {corrected} fields, F1 {scores['f1']:.3f}, AJI {scores['aji']:.3f}")
    return records


def summarize(records: list[dict]) -> str:
    """A Markdown table: F1 and AJI (mean +- std over seeds) per strategy and number of corrected fields."""
    lines = ["| strategy | fields | F1 | AJI | seeds |", "| --- | --- | --- | --- | --- |"]
    keys = sorted({(r["strategy"], r["fields"]) for r in records})
    for strategy, fields in keys:
        rows = [r for r in records if r["strategy"] == strategy and r["fields"] == fields]
        f1, aji = np.array([r["f1"] for r in rows]), np.array([r["aji"] for r in rows])
        lines.append(f"| {strategy} | {fields} | {f1.mean():.3f} +- {f1.std():.3f} | {aji.mean():.3f} +- "
                     f"{aji.std():.3f} | {len(rows)} |")
    return "\n".join(lines) + "\n"


def run_experiment(*, train, test, strategies=STRATEGIES, seeds=(0, 1, 2), out: Path, **kw) -> list[dict]:
    """Every strategy and seed; writes ``results.jsonl`` (appended as it goes) and ``summary.md``."""
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with open(out / "results.jsonl", "a", encoding="utf-8") as log_file:
        for seed in seeds:
            for strategy in strategies:
                for record in run_strategy(strategy=strategy, seed=seed, train=train, test=test, out=out, **kw):
                    log_file.write(json.dumps(record) + "\n")
                    log_file.flush()
                    records.append(record)
    # every record in results.jsonl: seeds may run as separate processes into the same folder
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "summary.md").write_text(summarize([json.loads(line) for line in lines if line.strip()]), encoding="utf-8")
    return records


def _load(images: str, masks: str, num_classes: int = 2, exclude: set[str] = frozenset()):
    data = load_pairs(num_classes=num_classes, image_dir=images, mask_dir=masks)
    keep = [i for i, n in enumerate(data.names) if Path(n).stem not in exclude]
    return ([Path(data.names[i]).stem for i in keep], [data.images[i] for i in keep], [data.masks[i] for i in keep])


def _instance_masks(folder: str, names: list[str]) -> list[np.ndarray]:
    from napari_genselfdiff.core.io.read import read_array
    from napari_genselfdiff.core.metrics.evaluation import to_label_image

    return [to_label_image(read_array(Path(folder) / f"{n}.png")) for n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="training images (the simulated pathologist's fields)")
    parser.add_argument("--masks", required=True, help="their ground-truth masks (the pathologist's corrections)")
    parser.add_argument("--test-images", required=True)
    parser.add_argument("--test-masks", required=True)
    parser.add_argument("--init", default="scratch", help="model to start from (pretrained or fine-tuned), or scratch")
    parser.add_argument("--arch", default="tiny", help="network preset when starting from scratch")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--k", type=int, default=4, help="fields corrected per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps per round")
    parser.add_argument("--field", type=int, default=256, help="field side in pixels")
    parser.add_argument("--size", type=int, default=256, help="training patch side")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--test-instances", help="instance masks of the test images (<name>.png), for AJI")
    parser.add_argument("--exclude", nargs="*", default=[],
                        help="training images left out of the pool (e.g. those the --init model was trained on)")
    parser.add_argument("--annotated", nargs="*", default=[],
                        help="training images already annotated in full (e.g. the --init model's): kept in every "
                             "round's training set beside the corrected fields, and left out of the pool")
    parser.add_argument("--recipe", action="store_true",
                        help="fine-tune each round with the shipped model's recipe: Dice+CE, HED stain jitter, "
                             "Adam (0.9, 0.999), cosine schedule with 5 warm-up steps, gradient clip 1.0")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    train = _load(args.images, args.masks, exclude=set(args.exclude) | set(args.annotated))
    annotated = []
    if args.annotated:
        everything = _load(args.images, args.masks)
        annotated = [(n, im, gt) for n, im, gt in zip(*everything) if n in set(args.annotated)]
        if len(annotated) != len(set(args.annotated)):
            parser.error(f"--annotated: not all of {args.annotated} are in {args.images}")
    test_names, test_images, test_masks = _load(args.test_images, args.test_masks)
    test = (test_images, test_masks)
    if args.test_instances:
        test += (_instance_masks(args.test_instances, test_names),)
    recipe = dict(loss="dice_ce", stain_jitter=True, betas=[0.9, 0.999], lr_schedule="cosine", warmup_steps=5,
                  grad_clip=1.0) if args.recipe else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "command.txt").write_text("python src_train/experiments/active_learning.py "
                                          + " ".join(argv if argv is not None else sys.argv[1:]) + "\n")
    if args.init != "scratch" and not (args.out / "round0.json").exists():  # the starting model, 0 fields
        settings = InferenceSettings(tile=512, overlap=32, device=args.device, precision="auto")
        start = {"fields": 0, "model": args.init, **score(Path(args.init), test[0], test[1], settings, *test[2:])}
        (args.out / "round0.json").write_text(json.dumps(start))
        print(f"start: F1 {start['f1']:.3f}, AJI {start['aji']:.3f}", flush=True)
    run_experiment(train=train, test=test, strategies=args.strategies, seeds=args.seeds,
                   out=args.out, init=args.init, arch=args.arch, k=args.k, rounds=args.rounds, steps=args.steps,
                   field=args.field, patch=args.size, batch=args.batch, lr=args.lr, device=args.device,
                   recipe=recipe, annotated=annotated)
    print((args.out / "summary.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
