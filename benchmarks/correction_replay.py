"""The correction loop replayed as a lab's first hour (issue 25): a nucleus model that has never seen an
organ, a pathologist's corrections on that organ's images, fine-tuning the way the napari widget runs it,
and the model scored on the organ's OTHER images as training goes on.

For each organ and seed, the organ's six MoNuSeg training images are shuffled: the first three are the
ones the pathologist corrects, the last three are scored (never trained on). Conditions:

- ``fields4``: four 256 x 256 fields of the first image marked as corrected (a partial pair: everything
  else unknown, left out of the loss), drawn at random among the fields that hold nuclei;
- ``image1``: the first image corrected whole;
- ``images3``: the first three images corrected whole.

``--labs`` replays a lab instead of an organ: the organ's images from ONE hospital (TCGA tissue source
site, with two or more images), the first corrected, the site's others scored.

The corrections are the expert masks (labels and nuclei) stored in an annotation set the way "Mark as
corrected" stores them, read back with ``AnnotationSet.training_items()`` and turned into the run by
``core.training.corrections.corrections_config``: the widget's own code path. The base model of an
organ is ``runs/recipe/loo_<organ>/last.safetensors`` (``src_train/experiments/leave_organ_out.sh``: the
v2 recipe on the other organs' 24 images; when that run folder is gone, its fp16 copy in
``src_train/checkpoints/loo/``), given the shipped model's splitting settings and resolution.

Every ``--score-every`` steps the run's checkpoint segments the three scored images (whole, with
nuclei): pixel F1, AJI and PQ, against the CPU time spent training so far (process time, every thread).
``--forgetting`` also scores, at the recipe's step count (the Train tab's default; the last step when
the run is shorter), one image of each other organ (images the base model
was trained on: what it knew). One JSON line per (organ, seed, condition, step) goes to
``<out>/results.jsonl``; a run already in the file is skipped (resumable).

    python benchmarks/correction_replay.py --name defaults --organs lung --seeds 0 1 --conditions image1
    python benchmarks/correction_replay.py --name lr5e-4 --set lr=5e-4 --organs lung --seeds 0 1 --conditions image1

Choose settings on ``lung``; report on breast, kidney and prostate (``--organs breast kidney prostate``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from napari_genselfdiff.core.allocator import keep_freed_memory  # noqa: E402
from napari_genselfdiff.core.annotations.store import AnnotationSet  # noqa: E402
from napari_genselfdiff.core.inference import InferenceSettings, segment  # noqa: E402
from napari_genselfdiff.core.io.read import read_array  # noqa: E402
from napari_genselfdiff.core.metrics import instance_scores  # noqa: E402
from napari_genselfdiff.core.metrics.evaluation import evaluate_pair, to_label_image  # noqa: E402
from napari_genselfdiff.core.model_files import load_model, read_model_info  # noqa: E402
from napari_genselfdiff.core.model_files.store import bundled_model_path, save_model  # noqa: E402
from napari_genselfdiff.core.progress import run_generator  # noqa: E402
from napari_genselfdiff.core.training import finetune  # noqa: E402
from napari_genselfdiff.core.training.checkpoint import checkpoint_network  # noqa: E402
from napari_genselfdiff.core.training.corrections import CORRECTION_RECIPE, corrections_config  # noqa: E402
from src_train.experiments.organs import ORGANS  # noqa: E402

CONDITIONS = ("fields4", "image1", "images3")
#: the base models as src_train/experiments/leave_organ_out.sh leaves them, and their fp16 copies in the repository
DEFAULT_BASE = str(REPO / "runs" / "recipe" / "loo_{organ}" / "last.safetensors")
COMMITTED_BASE = REPO / "src_train" / "checkpoints" / "loo" / "{organ}.safetensors"
FIELD = 256


def parse_value(text: str):
    """A --set value: a number, true/false/none, "a,b" (a tuple), else the text."""
    if "," in text:
        return tuple(parse_value(part) for part in text.split(","))
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def load_image(folder: Path, stem: str):
    rgb = read_array(folder / "images" / f"{stem}.tif")
    inst = to_label_image(read_array(folder / "instance_masks" / f"{stem}.png")).astype(np.int32)
    return rgb, inst


def prepared_base(organ: str, pattern: str, out: Path) -> Path:
    """The organ's base model with the shipped model's splitting settings and resolution (once)."""
    path = out / f"base_{organ}.safetensors"
    if not path.is_file():
        source = Path(pattern.format(organ=organ))
        if not source.is_file() and pattern == DEFAULT_BASE:  # the run folder is gone: the committed fp16 copy
            source = COMMITTED_BASE.parent / COMMITTED_BASE.name.format(organ=organ)
        model, info = load_model(source)
        save_model(path, model, with_shipped_splitting(info))
    return path


def with_shipped_splitting(info):
    """``info`` with the bundled model's splitting settings and resolution (for models trained without them)."""
    shipped = read_model_info(bundled_model_path())
    return dataclasses.replace(info, postprocess=shipped.postprocess, mpp=shipped.mpp)


def field_boxes(inst: np.ndarray, k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``k`` non-overlapping FIELD x FIELD fields (top-left corners) of a grid, drawn among those with nuclei."""
    h, w = inst.shape
    grid = [(y, x) for y in range(0, h - FIELD + 1, FIELD) for x in range(0, w - FIELD + 1, FIELD)]
    with_nuclei = [(y, x) for y, x in grid if len(np.unique(inst[y:y + FIELD, x:x + FIELD])) > 3]
    chosen = rng.choice(len(with_nuclei), size=min(k, len(with_nuclei)), replace=False)
    return [with_nuclei[i] for i in sorted(chosen)]


def store_corrections(folder: Path, condition: str, images: list[tuple[str, np.ndarray, np.ndarray]],
                      rng: np.random.Generator) -> tuple[list[tuple], dict, int]:
    """The corrections as "Mark as corrected" stores them; returns training_items(), instances, #fields."""
    aset = AnnotationSet(folder)
    n_fields = 0
    if condition == "fields4":
        name, rgb, inst = images[0]
        boxes = field_boxes(inst, 4, rng)
        regions = [{"type": "rectangle", "points": [[y, x], [y + FIELD - 1, x + FIELD - 1]]} for y, x in boxes]
        aset.add(rgb, (inst > 0).astype(np.uint8), name=name, instances=inst, regions=regions)
        n_fields = len(boxes)
    else:
        for name, rgb, inst in images[: 1 if condition == "image1" else 3]:
            aset.add(rgb, (inst > 0).astype(np.uint8), name=name, instances=inst)
            n_fields += (rgb.shape[0] // FIELD) * (rgb.shape[1] // FIELD)
    aset = AnnotationSet(folder, create=False)
    items = aset.training_items()
    instances = {p.name: aset.load_instances(p.id) for p in aset.pairs}
    return items, instances, n_fields


def pretrain_on(args, recipe, info, base: Path, images: list[np.ndarray], work: Path, seed: int) -> tuple[str, float]:
    """Diffusion pretraining on ``images``, continued from the base model's backbone or from scratch (the
    base model's network); returns the pretrained model file and the CPU seconds it took."""
    from napari_genselfdiff.core.training import PretrainConfig, pretrain

    cfg = PretrainConfig(images=images, out_dir=str(work / "pretrain"),
                         init=str(base) if args.pretrain == "continued" else "scratch",
                         arch=info.architecture.with_head("noise", 3), steps=args.pretrain_steps, batch=recipe.batch,
                         patch_size=recipe.patch, stride=recipe.patch // 2, lr=args.pretrain_lr,
                         precision=args.train_precision, seed=seed, checkpoint_every=0)
    t = time.process_time()
    path = run_generator(pretrain(cfg))
    return str(path), time.process_time() - t


def write_folders(folder: Path, stems: list[str], data: Path) -> tuple[str, str]:
    """Folders of images and masks (paired by name) of the base model's own training images: what a lab
    gives as "+ images" / "+ masks" to mix the model's original data into the fine-tune."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for stem in stems:
        shutil.copy(data / "images" / f"{stem}.tif", images / f"{stem}.tif")
        shutil.copy(data / "masks" / f"{stem}.png", masks / f"{stem}.png")
    return str(images), str(masks)


def image_scores(model, info, images, precision: str) -> list[dict]:
    """Pixel F1, AJI and PQ of each ``(name, rgb, instances)`` image segmented whole (instances on)."""
    settings = InferenceSettings(instances=True, precision=precision)
    rows = []
    for name, rgb, gt in images:
        result = segment(model, info, rgb, settings)
        fg = (np.asarray(result.labels) > 0).astype(np.uint8)
        row = {"image": name, "f1": evaluate_pair(fg, (gt > 0).astype(np.uint8), instances=False)["f1"]}
        row.update({k: v for k, v in instance_scores(np.asarray(result.instances), gt).items() if k in ("aji", "pq")})
        rows.append(row)
    return rows


def scores(model, info, images, precision: str) -> dict:
    """The per-image means of :func:`image_scores`."""
    rows = image_scores(model, info, images, precision)
    return {k: float(np.mean([r[k] for r in rows])) for k in ("f1", "aji", "pq")}


BASE_TEST: dict[str, dict] = {}  # organ -> the base model's scores on the test images (computed once)


def test_images(args) -> list:
    """The MoNuSeg test images (reported only: what the adapted model lost elsewhere; never chosen on)."""
    if not hasattr(args, "_tests"):
        stems = sorted(p.stem for p in (args.test / "images").glob("*.tif"))
        args._tests = [(s, *load_image(args.test, s)) for s in stems]
    return args._tests


def site_of(stem: str) -> str:
    """The TCGA tissue source site of an image id (its second field): the hospital that sent the slide."""
    return stem.split("-")[1]


def labs(organ: str) -> list[str]:
    """The organ's sites with at least two images (a lab: one corrected image, the others scored)."""
    sites = [site_of(s) for s in ORGANS[organ]]
    return sorted({site for site in sites if sites.count(site) >= 2})


def replay_one(args, recipe, organ: str, seed: int, condition: str, base: Path, data: Path, log,
               lab: str | None = None) -> None:
    stems = [s for s in ORGANS[organ] if lab is None or site_of(s) == lab]
    order = np.random.default_rng([seed, 25]).permutation(stems)
    n_corrected = 1 if lab else 3  # a lab: the first image corrected, all its others scored
    corrected = [(s, *load_image(data, s)) for s in order[:n_corrected]]
    scored = [(s, *load_image(data, s)) for s in order[n_corrected:]]
    other_stems = [stems[seed % len(stems)] for o, stems in ORGANS.items() if o != organ]
    others = [(s, *load_image(data, s)) for s in other_stems] if args.forgetting else []
    key = dict(organ=organ if lab is None else f"{organ}/{lab}", seed=seed, condition=condition)
    if args.pretrain:
        key["pretrain"] = f"{args.pretrain} {args.pretrain_steps} steps"
    held = set(other_stems) | set(ORGANS[organ])
    pool = [s for stems in ORGANS.values() for s in stems if s not in held]
    mixed = sorted(np.random.default_rng([seed, 27]).permutation(pool)[: args.mix].tolist()) if args.mix else []
    model, info = load_model(base)
    tests = test_images(args) if args.test and seed == 0 else []
    base_test = {}
    if tests:
        if organ not in BASE_TEST:
            BASE_TEST[organ] = {f"test_{k}": v for k, v in scores(model, info, tests, args.precision).items()}
        base_test = BASE_TEST[organ]
    log(dict(key, step=0, cpu_s=0.0, wall_s=0.0, **scores(model, info, scored, args.precision), **base_test,
             **({f"other_{k}": v for k, v in scores(model, info, others, args.precision).items()} if others else {})))
    work = Path(tempfile.mkdtemp(prefix=f"replay-{organ}-{seed}-{condition}-", dir=args.out))
    try:
        items, instances, n_fields = store_corrections(work / "set", condition, corrected,
                                                       np.random.default_rng([seed, 26]))
        folders = write_folders(work / "original", mixed, data) if mixed else (None, None)
        init, cpu = str(base), 0.0
        if args.pretrain:  # diffusion pretraining on the organ's six images (unlabeled), timed with the rest
            init, cpu = pretrain_on(args, recipe, info, base, [rgb for _, rgb, _ in corrected + scored], work, seed)
        cfg = corrections_config(items, init=init, out_dir=str(work / "run"), recipe=recipe,
                                 instances=instances, images=folders[0], masks=folders[1],
                                 steps=args.steps, val_fraction=0.0,
                                 precision=args.train_precision, seed=seed)
        cfg.checkpoint_every = args.score_every
        cfg.keep_checkpoints = 2
        cfg.output = info.output  # a pretrained (noise) start gets the base model's kind of head
        gen = finetune(cfg)
        wall = 0.0
        while True:
            t_cpu, t_wall = time.process_time(), time.perf_counter()
            try:
                event = next(gen)
            except StopIteration:
                break
            cpu += time.process_time() - t_cpu
            wall += time.perf_counter() - t_wall
            if event.kind == "checkpoint" and event.path is not None:
                net, ninfo = checkpoint_network(event.path)
                if ninfo.postprocess is None:  # from a pretrained start: the base model's splitting settings
                    ninfo = dataclasses.replace(ninfo, postprocess=info.postprocess)
                last = event.step == args.judge_at  # the step whose model is judged elsewhere (the default)
                row = dict(key, step=event.step, cpu_s=cpu, wall_s=wall, n_fields=n_fields,
                           **scores(net, ninfo, scored, args.precision))
                if last and others:
                    row.update({f"other_{k}": v for k, v in scores(net, ninfo, others, args.precision).items()})
                if last and tests:
                    row.update({f"test_{k}": v for k, v in scores(net, ninfo, tests, args.precision).items()})
                log(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="the run's name: <out>/<name>/results.jsonl")
    p.add_argument("--organs", nargs="+", default=["breast", "kidney", "prostate"], choices=sorted(ORGANS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="change correction settings (core.training.corrections.CorrectionRecipe), e.g. lr=5e-4")
    p.add_argument("--steps", type=int, default=None, help="fine-tuning steps (default: the recipe's)")
    p.add_argument("--score-every", type=int, default=100)
    p.add_argument("--mix", type=int, default=0,
                   help="mix this many of the base model's own training images (whole, other organs) into the fine-tune")
    p.add_argument("--pretrain", choices=["continued", "scratch"], default=None,
                   help="diffusion pretraining on the organ's six images before fine-tuning: continued from the base "
                        "model's backbone, or from scratch; its CPU time counts")
    p.add_argument("--pretrain-steps", type=int, default=250)
    p.add_argument("--pretrain-lr", type=float, default=1e-4)
    p.add_argument("--test", type=Path, default=None, metavar="DIR",
                   help="also score the MoNuSeg test images (DIR/images, DIR/instance_masks) before and after, for "
                        "seed 0 only (a report of what the adapted model lost; never used to choose)")
    p.add_argument("--labs", action="store_true",
                   help="one lab per TCGA site of the organ with two or more images: one image corrected, the "
                        "site's others scored (conditions fields4 and image1 only)")
    p.add_argument("--forgetting", action="store_true", help="also score one image of each other organ at the end")
    p.add_argument("--base", default=DEFAULT_BASE,
                   help="the base model of {organ} (default: the run folder, else src_train/checkpoints/loo/, fp16)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "monuseg" / "train")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "replay")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="auto", help="inference precision for scoring")
    p.add_argument("--train-precision", default="auto")
    args = p.parse_args(argv)
    if args.labs and "images3" in args.conditions:
        p.error("--labs corrects one image: use --conditions fields4 image1")
    if not (args.data / "images").is_dir():
        print(f"skipped: MoNuSeg training images not found under {args.data} (pass --data)", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    keep_freed_memory()
    recipe = CORRECTION_RECIPE.with_(**{k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)})
    args.steps = args.steps or recipe.steps
    args.judge_at = min(recipe.steps, args.steps)
    run = args.out / args.name
    run.mkdir(parents=True, exist_ok=True)
    results = run / "results.jsonl"
    done = set()
    if results.is_file():
        for line in results.read_text().splitlines():
            r = json.loads(line)
            if r["step"] == args.steps:
                done.add((r["organ"], r["seed"], r["condition"]))
    (run / "command.json").write_text(json.dumps({
        "command": "python benchmarks/correction_replay.py " + " ".join(argv or sys.argv[1:]),
        "recipe": dataclasses.asdict(recipe), "steps": args.steps, "mix": args.mix, "pretrain": args.pretrain,
        "pretrain_steps": args.pretrain_steps, "threads": args.threads}, indent=1))

    def log(row):
        row = dict(row, name=args.name)
        print(json.dumps(row), flush=True)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")

    for organ in args.organs:
        base = prepared_base(organ, args.base, args.out)
        for seed in args.seeds:
            for lab in labs(organ) if args.labs else [None]:
                for condition in args.conditions:
                    if (organ if lab is None else f"{organ}/{lab}", seed, condition) in done:
                        continue
                    replay_one(args, recipe, organ, seed, condition, base, args.data, log, lab=lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
