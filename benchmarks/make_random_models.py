"""Write randomly initialised class-head model files of the named presets, for timing the CLI.

    python benchmarks/make_random_models.py OUT_DIR [PRESET ...]     (default presets: paper small)

Each file is OUT_DIR/<preset>_random.safetensors: 2 classes (background, nucleus), random weights, so
its labels mean nothing; the time per image is what a trained model of that size takes. Then e.g.

    genselfdiff segment ../shared/data/monuseg/test/images/TCGA-2Z-A9J9-01A-01-TS1.tif \\
        --model OUT_DIR/paper_random.safetensors --out /tmp/bench --device cpu --overwrite
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from napari_genselfdiff.core.model_files import ModelInfo, default_classes, save_model
from napari_genselfdiff.core.network import PRESETS, AttentionUNet
from napari_genselfdiff.core.network.unet import count_parameters


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    out = Path(argv[0])
    for preset in argv[1:] or ["paper", "small"]:
        torch.manual_seed(0)
        config = PRESETS[preset].with_head("classes", 2)
        network = AttentionUNet(config)
        info = ModelInfo(
            architecture=config,
            classes=default_classes(["background", "nucleus"]),
            provenance={"data": "none (random initialisation, for timing only)"},
            card={"intended_use": "benchmarking the command line; the labels are meaningless"},
        )
        path = save_model(out / f"{preset}_random.safetensors", network, info)
        print(f"{path}: {preset} ({'-'.join(map(str, config.widths))}), {count_parameters(network) / 1e6:.1f} M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
