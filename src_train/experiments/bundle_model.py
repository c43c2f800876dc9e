"""Copy a trained nuclei model into the package as the bundled default, with its model card.

    python src_train/experiments/bundle_model.py --record docs/results/recipe/<run>.json

Reads the run's record (written by recipe.py: the command, settings, validation and test scores) and
the model file's own provenance (written by the trainer), so the card states what was actually run,
adds the instance post-processing defaults, and writes float16 safetensors (+ the JSON mirror) to
napari_genselfdiff/models/default_nuclei.safetensors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from napari_genselfdiff.core.inference.instances import CUE_DEFAULTS, instance_defaults  # noqa: E402
from napari_genselfdiff.core.model_files import load_model, save_model  # noqa: E402
from napari_genselfdiff.core.model_files.store import BUNDLED_DEFAULT, BUNDLED_DIR  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

#: MoNuSeg's scan resolution (40x), the resolution the bundled model was trained at.
MONUSEG_MPP = 0.25


def _rounded(values: dict) -> dict:
    return {k: round(float(v), 4) for k, v in values.items() if isinstance(v, (int, float))}


def training_history(record: dict, results: Path) -> list[dict]:
    """Every training stage behind ``record``'s model, first stage first: a run started ``--init`` from
    another run's model (``runs/recipe/<name>/...``) or from the bundled model (whose provenance names its
    own record) continues that run's history. Each stage: run name, command, steps run, the step kept."""
    stages, seen = [], set()
    while record is not None and record["name"] not in seen:
        seen.add(record["name"])
        stage = {"run": record["name"], "command": record["command"], "steps_run": record["settings"].get("steps")}
        model = Path(record.get("model", ""))
        if model.is_file():
            stage["step_kept"] = load_model(model)[1].provenance.get("steps")
        stages.insert(0, stage)
        init = str(record["settings"].get("init", "scratch"))
        if init == "scratch":
            break
        init_path = Path(init)
        mirror = init_path.with_suffix(".json")
        parent_card = (json.loads(mirror.read_text()).get("card") or {}) if mirror.is_file() else {}
        if len(init_path.parts) >= 2 and (results / f"{init_path.parent.name}.json").is_file():
            # another run's model (runs/recipe/<name>/best.safetensors): its record goes on (its file's card is
            # only inherited from ITS parent, without its own stage)
            record = json.loads((results / f"{init_path.parent.name}.json").read_text())
            continue
        if parent_card.get("training_history"):
            # the bundled model (or a kept copy of one) carries its whole history on its card; where that file
            # has been replaced since by a later model trained from it (its card then lists a run already
            # followed here), only the stages before that run are this chain's
            history = list(parent_card["training_history"])
            cut = next((k for k, st in enumerate(history) if st.get("run") in seen), len(history))
            stages[:0] = history[:cut]
            break
        if init_path.name == BUNDLED_DEFAULT or (mirror.is_file() and "experiment" in
                                                 json.loads(mirror.read_text()).get("provenance", {})):
            # the bundled model, or a kept copy of an earlier one (src_train/checkpoints/nuclei_v1.*)
            parent_record = json.loads(mirror.read_text())["provenance"]["experiment"]["record"]
            record_path = Path(parent_record)
        else:
            stages.insert(0, {"run": "init", "model": init})
            break
        record = json.loads((record_path if record_path.is_absolute() else REPO / record_path).read_text())
    return stages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", type=Path, required=True, help="docs/results/recipe/<run>.json")
    p.add_argument("--out", type=Path, default=BUNDLED_DIR / BUNDLED_DEFAULT)
    p.add_argument("--instances-json", type=Path, default=None,
                   help="nucleus-splitting settings chosen on training images (tune_instances.py)")
    p.add_argument("--test-json", type=Path, default=None,
                   help="test scores of the bundled file itself, written by 'genselfdiff evaluate --instances --json' "
                        "(score_cli.sh); else the record's own 'test' (recipe.py --test)")
    args = p.parse_args(argv)
    record = json.loads(args.record.read_text())
    if args.test_json is not None:
        record["test"] = json.loads(args.test_json.read_text())
    history = training_history(record, args.record.resolve().parent)  # before the bundled file is replaced
    model, info = load_model(record["model"])
    prov = info.provenance
    test = _rounded(record.get("test", {}).get("mean", {}))
    val = _rounded(record.get("validation", {}).get("mean", {}))
    prov["metrics"] = {**{f"monuseg_test_{k}": v for k, v in test.items()},
                       **{f"validation_{k}": v for k, v in val.items()}}
    prov["evaluation"] = (
        ("test: this file through genselfdiff segment --instances (auto precision, resolution read or estimated) and "
         "genselfdiff evaluate --instances, per-image means; " if args.test_json is not None else "")
        + "whole images, tile 512, fp32: pixel IoU/F1 and boundary HD/HD95 against the binary masks, instance AJI "
        "(Kumar et al. 2017) against the instance masks, nuclei split by core.inference.instances; validation = "
        f"{len(record.get('validation', {}).get('per_image', {}))} held-out MoNuSeg training images, test = the 14 "
        "official MoNuSeg 2018 test images (never used to choose anything)")
    prov["experiment"] = {"record": str(args.record), "command": record["command"]}
    instances = instance_defaults() if info.output == "classes" else dict(CUE_DEFAULTS[info.output])
    if args.instances_json is not None:
        best = json.loads(args.instances_json.read_text())["best"]
        instances = dict(best.get("params", best))  # tune_splitting.py rows carry their params
    info.postprocess = {"instances": instances}
    info.mpp = MONUSEG_MPP
    arch = info.architecture
    settings = record["settings"]
    loss = prov.get("loss", {}).get("name", settings.get("loss"))
    aug = ", ".join(k for k, v in prov.get("augmentation", {}).items() if v)
    info.card = {
        "name": "GenSelfDiff nuclei (MoNuSeg)",
        "display_name": f"nuclei (H&E, 40x), trained on {len(record['train_images'])} MoNuSeg images",
        "output": info.output,
        "intended_use": "Nucleus segmentation (background / nucleus, optional instances) of H&E-stained "
                        "histopathology fields, as a starting point that a pathologist corrects in napari.",
        "training_data": f"MoNuSeg 2018 training images ({len(record['train_images'])} labelled images: "
                         f"{', '.join(record['train_images'])}), "
                         + ("binary nucleus masks" if info.output == "classes" else "instance masks (all 30 have them)")
                         + "; Kumar et al. IEEE TMI 2017 "
                         "and 2020, CC BY-NC-SA 4.0.",
        "initialisation": history[0].get("model", "scratch") if history else prov.get("parent", "scratch"),
        "training_history": history,
        "protocol": f"{prov.get('steps')} steps, batch {prov.get('batch')}, {prov.get('patch_size')} px patches, "
                    f"Adam lr {prov.get('lr'):g} ({prov.get('lr_schedule')} schedule, {prov.get('warmup_steps')} warm-up "
                    f"steps), gradient clipping {prov.get('grad_clip')}, loss {loss}, augmentation: {aug}; "
                    f"{prov.get('precision')} on {prov.get('device')}; network widths {'-'.join(map(str, arch.widths))}, "
                    f"{arch.blocks_per_level} block(s) per level, {arch.norm} norm, stem stride {arch.stem_stride}, "
                    f"linear attention {'at every level' if arch.level_attention else 'off; full attention at the bottleneck'}, "
                    f"called at timestep {arch.segment_timestep}. Command of this last stage: " + record["command"],
        "metrics": {**test, **{f"validation_{k}": v for k, v in val.items()}},
        "limits": [
            "Trained at 40x magnification (about 0.25 um/px); images at other magnifications are resampled to it "
            "where their resolution is known or estimated"
            + (f"; training patches were rescaled by {settings['scale_range'][0]:g}-{settings['scale_range'][1]:g}x, "
               "so it tolerates scans near 20x without resampling." if settings.get("scale_range") else "."),
            "H&E only, on the stain variation of 30 TCGA slides from a few organs (with stain jitter in training); "
            "other stains or strong colour casts need fine-tuning on corrected examples.",
            "A small network trained on a CPU budget: it is a starting point for correction, not a diagnostic device.",
            ("Touching nuclei are split by a watershed on the distance transform; clumps can still be merged."
             if info.output == "classes" else
             f"Touching nuclei are split by the network's own {info.output} output (output kind '{info.output}', "
             "splitting parameters chosen on held-out training images); slides split them block by block."),
        ],
        "licence": "Weights derived from MoNuSeg (CC BY-NC-SA 4.0): non-commercial use, share alike.",
    }
    path = save_model(args.out, model, info, half=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
