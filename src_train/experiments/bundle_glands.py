"""Copy a trained GlaS gland model into the package as ``napari_genselfdiff/models/glands.safetensors``
(``--model glands`` everywhere, through the bundled-model registry), with its model card.

    python src_train/experiments/bundle_glands.py --record docs/results/glas/<run>.json

Reads the run's record (written by glas.py: command, settings, validation and testA/testB scores) and
the model file's own provenance, so the card states what was run. The file records the GlaS
resolution (0.62 um/px, ``ModelInfo.mpp``: images of known other resolution are resampled to it), the
class "Gland" (its GeoJSON objects are QuPath annotations classified "Gland"), the gland instance rule
(connected components, no watershed, at least GLAND_MIN_SIZE pixels) and float16 weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from glas import GLAND_MIN_SIZE, GLAND_POSTPROCESS, GLAS_MPP, cue_postprocess  # noqa: E402

from napari_genselfdiff.core.model_files import load_model, save_model  # noqa: E402
from napari_genselfdiff.core.model_files.classes import ClassInfo  # noqa: E402
from napari_genselfdiff.core.model_files.store import BUNDLED_DIR  # noqa: E402

#: The gland class as the bundled model names it (QuPath classification "Gland").
GLAND_CLASSES = [ClassInfo(0, "background", (0, 0, 0, 0)), ClassInfo(1, "Gland", (0, 160, 255, 255))]

GLAS_TERMS = ("GlaS data: research use only. Cite Sirinukunwattana et al., 'Gland segmentation in colon "
              "histology images: The GlaS challenge contest', Medical Image Analysis 35, 2017, and Sirinukunwattana "
              "et al., 'A stochastic polygons model for glandular structures in colon histology images', IEEE TMI "
              "34(11), 2015.")


def training_stages(record: dict) -> list[str]:
    """The commands that made the record's model, first stage first: a run that started from another
    glas.py run's model (``--init runs/glas/<run>/...``) is preceded by that run's stages."""
    init = str(record.get("settings", {}).get("init", ""))
    earlier = [r for r in (json.loads(f.read_text()) for f in sorted(Path(__file__).resolve().parents[2].joinpath(
        "docs", "results", "glas").glob("*.json"))) if isinstance(r, dict) and r.get("model") and "command" in r
        and Path(r["model"]).resolve() == Path(init).resolve()] if init.startswith("runs/") else []
    return (training_stages(earlier[0]) if earlier else []) + [record["command"]]


def _rounded(values: dict) -> dict:
    return {k: round(float(v), 4) for k, v in values.items() if isinstance(v, (int, float))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--record", type=Path, required=True, help="docs/results/glas/<run>.json")
    p.add_argument("--out", type=Path, default=BUNDLED_DIR / "glands.safetensors")
    p.add_argument("--test-json", type=Path, default=None,
                   help="testA/testB scores written by 'genselfdiff evaluate --glas --by-prefix --json' (else the "
                        "record's own 'test', from glas.py --test)")
    p.add_argument("--instances-json", type=Path, default=None,
                   help="gland-splitting settings chosen on the held-out images (tune_glands.py; in model pixels)")
    args = p.parse_args(argv)
    record = json.loads(args.record.read_text())
    model, info = load_model(record["model"])
    prov = info.provenance
    metrics = {}
    if args.test_json is not None:
        record["test"] = json.loads(args.test_json.read_text())
    for part, key in (("validation", "validation"), ("test", "test")):
        for prefix, group in (record.get(key) or {}).get("groups", {}).items():
            if part == "test" and prefix not in ("testA", "testB"):
                continue
            name = "validation" if part == "validation" else prefix
            metrics.update({f"{name}_{k}": v for k, v in _rounded(group["mean"]).items()})
    prov["metrics"] = metrics
    prov["evaluation"] = (
        "whole images, per-image means (validation: glas.py, fp32; test: genselfdiff segment --instances with auto "
        "precision, then genselfdiff evaluate --glas --by-prefix, when --test-json is given): pixel F1/IoU (gland vs background), GlaS object F1 / "
        "object Dice / object Hausdorff (Sirinukunwattana et al. 2017; core/metrics/objects.py) on gland instances "
        "(made as the model file's postprocess says) against the GlaS masks' components; validation = the 16 "
        "training images of patients 3, 5, 6 (held out"
        + (")" if record.get("validation_images") else
           " from the same recipe's run on the other 69 images, which chose the splitting; this model trained on "
           "all 85)")
        + ", testA (60) and testB (20) = the official test sets, never used to choose anything")
    prov["experiment"] = {"record": str(args.record), "command": record["command"],
                          "test_command": record.get("test_command")}
    settings = record["settings"]
    scale = float(settings.get("scale", 1.0))
    info.classes = list(GLAND_CLASSES)
    # Instances are made at the model's resolution: the minimum gland size in its pixels.
    if info.output != "classes":  # the model's own cue (distance map, contour) splits touching glands
        info.postprocess = cue_postprocess(info.output, scale)
    else:
        info.postprocess = {"instances": {**GLAND_POSTPROCESS, "min_size": round(GLAND_MIN_SIZE * scale * scale)}}
    if args.instances_json is not None:
        best = json.loads(args.instances_json.read_text())["best"]
        info.postprocess = {"instances": dict(best["params"])}
        metrics.update({f"validation_split_{k}": round(float(best[k]), 4) for k in ("f1_object", "object_dice", "object_hd")})
    split = info.postprocess["instances"]
    info.mpp = round(GLAS_MPP / scale, 4)
    info.input_mpp = GLAS_MPP if scale != 1.0 else None
    arch = info.architecture
    init = settings.get("init", "scratch")
    stages = training_stages(record)
    info.card = {
        "name": "GenSelfDiff glands (GlaS)",
        "display_name": f"glands (H&E colon, 20x), trained on {len(record['train_images'])} GlaS images",
        "output": info.output,
        "intended_use": "Gland segmentation (background / gland, and gland instances) of H&E-stained "
                        "colorectal tissue at 20x, as a starting point that a pathologist corrects. Research use only.",
        "training_data": (f"GlaS 2015 training images ({len(record['train_images'])} of the 85; patients 3, 5 and 6 "
                          "held out for validation), " if record.get("validation_images") else
                          "all 85 GlaS 2015 training images (the choices were made on a run that held out patients "
                          "3, 5 and 6), ")
                         + ("gland masks and their gland ids (the distance-map targets). " if info.output == "distance"
                            else "binary gland masks. ") + GLAS_TERMS,
        "initialisation": init,
        "training_stages": stages,
        "protocol": f"{prov.get('steps')} steps, batch {prov.get('batch')}, {prov.get('patch_size')} px patches at "
                    f"{info.mpp:g} um/px (GlaS images shrunk {1 / scale:g}x), Adam lr {prov.get('lr'):g} ({prov.get('lr_schedule')}, {prov.get('warmup_steps')} "
                    f"warm-up steps), loss {settings.get('loss')}, stain jitter; {prov.get('precision')} on "
                    f"{prov.get('device')}; network widths {'-'.join(map(str, arch.widths))}, {arch.norm} norm, stem "
                    f"stride {arch.stem_stride}. Command: " + record["command"],
        "metrics": metrics,
        "limits": [
            f"Works at {info.mpp:g} um/px: GlaS images (20x, {GLAS_MPP} um/px) shrunk {1 / scale:g}x for context. Images "
            f"that record no resolution are taken as {GLAS_MPP} um/px (20x); others are resampled from what they record.",
            (f"Touching glands are split by the network's own gland distance map (h-maxima of height {split['h']:g} "
             f"after a {split.get('smooth', 0):g}-pixel smoothing); a gland whose map has two domes can be split; "
             if info.output == "distance" else
             "Touching glands are split by a distance-transform watershed (h "
             f"{split['h']:g}, min_distance {split['min_distance']:g} model pixels), which can also split a long gland; "
             if split.get("split_touching") else
             "Touching glands that the network joins stay one instance (connected components, no split); ")
            + f"objects under {split['min_size']} model pixels ({split['min_size'] / scale / scale:g} at 20x) are dropped.",
            "Colorectal H&E from one centre (GlaS, 16 slides' worth of patients); a short CPU training budget: "
            "a starting point for correction, not a diagnostic device.",
        ],
        "licence": "Weights derived from GlaS: research use only. " + GLAS_TERMS,
    }
    path = save_model(args.out, model, info, half=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
