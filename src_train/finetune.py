"""Fine-tune a pretrained (or a fresh) network for segmentation on image/mask pairs (GenSelfDiff-HIS stage 2).

    python src_train/finetune.py --images DIR --masks DIR --init RUN/pretrained.safetensors --out RUN_DIR
        [--classes background nucleus] [--val-fraction 0.2] [--steps N | --epochs E] [--resume]
    python src_train/finetune.py --images DIR --masks DIR --init scratch --arch small --out RUN_DIR

Masks pair with images by name (img1.tif <-> img1.png / img1_mask.png / img1_labels.tif) and hold
class ids 0..K-1 (0/255 binary masks are read as 0/1). A mask may also be QuPath GeoJSON
(img1.geojson): its detections and cells are rasterised to the --classes they are classified as
(names matched without case), and outside its region annotations the pixels are left out of the loss
(no region annotation: the whole image is complete). Writes RUN_DIR/best.safetensors (best
whole-image mean IoU on the held-out images) and last.safetensors. The same as
``genselfdiff finetune`` (napari_genselfdiff/cli/train.py). See docs/training.md.
"""

from __future__ import annotations

import sys

from napari_genselfdiff.cli.train import main as train_main

import _common  # noqa: F401  (puts the repository on sys.path)


def main(argv: list[str] | None = None) -> int:
    return train_main("finetune", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
