"""Copy a fine-tuned nuclei model into the package as the bundled default, with its model card.

    python src_train/experiments/bundle_model.py --results runs/monuseg/results.jsonl --run n30_scratch_s0

Takes the run's model file, adds the MoNuSeg test scores (whole-image, from results.jsonl), the
instance post-processing defaults and a model card (data, protocol, metrics, known limits), and writes
it as float16 safetensors (+ the JSON mirror) to napari_genselfdiff/models/default_nuclei.safetensors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.model_files import load_model, save_model  # noqa: E402
from napari_genselfdiff.core.model_files.store import BUNDLED_DEFAULT, BUNDLED_DIR  # noqa: E402


def pretraining_summary(path: Path) -> str:
    """One line on the diffusion pretraining behind a fine-tuned model (from the pretrained file's provenance)."""
    _, pre = load_model(path)
    prov = pre.provenance
    data = prov.get("data", {})
    return (f"diffusion-pretrained (DDPM noise prediction, P2-weighted loss, T = 1000) for {prov.get('steps')} steps "
            f"of batch {prov.get('batch')} on {data.get('patches', '?')} unlabeled patches of {prov.get('patch_size')} px "
            f"from {', '.join(map(str, data.get('folders', []))) or 'unlabeled images'} (masks never read)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path("runs/monuseg/results.jsonl"))
    p.add_argument("--run", required=True, help="run name in results.jsonl, e.g. n30_scratch_s0")
    p.add_argument("--out", type=Path, default=BUNDLED_DIR / BUNDLED_DEFAULT)
    p.add_argument("--instances-json", type=Path, default=None,
                   help="nucleus-splitting settings chosen on training images (tune_instances.py)")
    args = p.parse_args(argv)
    runs = {r["run"]: r for r in map(json.loads, args.results.read_text().splitlines()) if r}
    run = runs[args.run]
    model, info = load_model(run["model"])
    mean = {k: round(float(v), 4) for k, v in run["mean"].items() if isinstance(v, (int, float))}
    info.provenance["metrics"] = {f"monuseg_test_{k}": v for k, v in mean.items()}
    info.provenance["evaluation"] = (
        "14 official MoNuSeg 2018 test images, whole images, tile 512: pixel IoU/F1 and boundary HD/HD95 "
        "against the binary masks, instance AJI (Kumar et al. 2017) against the instance masks, nuclei "
        "split by the distance-transform watershed of core.metrics.instances"
    )
    info.provenance["experiment_run"] = args.run
    instances = {"split_touching": True, "min_distance": 8.0, "min_size": 30, "h": 1.0}
    if args.instances_json is not None:
        tuned = json.loads(args.instances_json.read_text())
        instances = tuned["best"]
        info.provenance["instances_tuning"] = (
            f"h and min_distance chosen by mean AJI on the {len(tuned['images'])} MoNuSeg training images "
            f"with instance masks ({tuned['best_mean_aji']:.4f}); src_train/experiments/tune_instances.py")
    info.postprocess = {"instances": instances}
    arch = info.architecture
    info.card = {
        "name": "GenSelfDiff nuclei (MoNuSeg, CPU protocol)",
        "intended_use": "Nucleus segmentation (background / nucleus, optional instances) of H&E-stained "
                        "histopathology fields, as a starting point that a pathologist corrects in napari.",
        "training_data": f"MoNuSeg 2018 training images ({run['n_labelled']} labelled images: {', '.join(run['images'])}), "
                         "binary nucleus masks; Kumar et al. IEEE TMI 2017 and 2020, CC BY-NC-SA 4.0.",
        "initialisation": (pretraining_summary(Path(run["pretrained"])) if run["init"] == "pretrained" and run.get("pretrained")
                           else run["init"]),
        "protocol": f"{run['steps']} fine-tuning steps, batch {run.get('batch', 8)}, {run.get('patch_size', 128)} px "
                    f"patches, Adam lr {run.get('lr', 1e-4):g} ({run.get('lr_schedule', 'constant')} schedule, "
                    f"{run.get('warmup', 0)} warm-up steps) betas {tuple(run.get('betas', (0.5, 0.999)))}, "
                    "SS + 1.0 x focal loss, flips/rot90/colour jitter/blur; fp32 on a 2-core CPU "
                    f"(network widths {'-'.join(map(str, arch.widths))}, linear attention "
                    f"{'at every level' if arch.level_attention else 'off; full attention at the bottleneck only'}).",
        "metrics": mean,
        "limits": [
            "Trained at 40x magnification (about 0.25 um/px): at 20x nuclei are half the size; rescale the image first.",
            "H&E only, on the stain variation of 30 TCGA slides from a few organs; other stains or strong "
            "colour casts need fine-tuning on corrected examples.",
            "A small network trained on a CPU budget: it is a starting point for correction, not a diagnostic device.",
            "Touching nuclei are split by a watershed on the distance transform; clumps can still be merged.",
        ],
        "licence": "Weights derived from MoNuSeg (CC BY-NC-SA 4.0): non-commercial use, share alike.",
    }
    path = save_model(args.out, model, info, half=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
