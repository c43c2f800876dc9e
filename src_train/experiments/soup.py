"""A "model soup" (Wortsman et al., ICML 2022): the mean of the weights of models fine-tuned from one parent
(other seeds or settings), one network at the cost of one; scored on the 6 held-out training images like a
recipe.py row (never the test images). Batch-norm running statistics are averaged too.

    python src_train/experiments/soup.py --name soup_w4 --models runs/recipe/w_control/best.safetensors \
        runs/recipe/w_cue3/best.safetensors ...
    python src_train/experiments/soup.py --name v21_soup --final --models ...   (no scoring: the shipped candidate)
    python src_train/experiments/soup.py --name gsoup_a --final --out runs/glas --results docs/results/glas --models ...
        (gland models: then tune_glands.py --model runs/glas/gsoup_a/soup.safetensors --scale 0.5)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.model_files import load_model  # noqa: E402
from napari_genselfdiff.core.model_files.store import save_model  # noqa: E402
from src_train.experiments.recipe import REPO, RESULTS, VALIDATION, score  # noqa: E402


def soup(paths: list[Path]):
    """(the network with the mean of the models' weights, the first model's info)."""
    models = [load_model(p) for p in paths]
    net, info = models[0]
    if any(m.config != net.config or i.output != info.output for m, i in models[1:]):
        raise SystemExit("the models differ in architecture or output: a soup needs one parent's descendants.")
    states = [m.state_dict() for m, _ in models]
    mean = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            mean[key] = sum(s[key].float() for s in states) / len(states)
        else:
            mean[key] = value  # counters (num_batches_tracked)
    net.load_state_dict(mean)
    return net, info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--models", type=Path, nargs="+", required=True)
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=Path("runs/recipe"))
    p.add_argument("--final", action="store_true", help="write the soup only (models trained on all 30 images, "
                   "or gland models, scored by tune_glands.py)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the record goes (default: docs/results/recipe)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    net, info = soup(args.models)
    path = args.out / args.name / "soup.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = {**info.provenance, "soup": [str(m) for m in args.models]}
    save_model(path, net, dataclasses.replace(info, provenance=provenance, path=None))
    record = {"name": args.name, "command": "python src_train/experiments/soup.py " + shlex.join(argv or sys.argv[1:]),
              "settings": {"init": str(args.models[0]), "soup": [str(m) for m in args.models]}, "model": str(path.resolve())}
    if not args.final:
        for s in (1.0, 0.5):
            key = "validation" if s == 1.0 else f"validation_x{s:g}"
            record[key] = score(path, args.data / "monuseg" / "train", VALIDATION, scale=s)
            print(f"[{args.name}] {key}: " + " ".join(f"{k} {v:.4f}" for k, v in record[key]["mean"].items()
                                                    if isinstance(v, float)), flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
