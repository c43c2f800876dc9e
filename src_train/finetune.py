"""Fine-tune a pretrained (or a fresh) network for segmentation on image/mask pairs (GenSelfDiff-HIS stage 2).

    python src_train/finetune.py --images DIR --masks DIR --init RUN/pretrained.safetensors --out RUN_DIR
        [--classes background nucleus] [--val-fraction 0.2] [--steps N | --epochs E] [--resume]
    python src_train/finetune.py --images DIR --masks DIR --init scratch --arch small --out RUN_DIR

Masks pair with images by name (img1.tif <-> img1.png / img1_mask.png / img1_labels.tif) and hold
class ids 0..K-1 (0/255 binary masks are read as 0/1). A mask may also be QuPath GeoJSON
(img1.geojson): its detections and cells are rasterised to the --classes they are classified as
(names matched without case), and outside its region annotations the pixels are left out of the loss
(no region annotation: the whole image is complete). Writes RUN_DIR/best.safetensors (best
whole-image mean IoU on the held-out images) and last.safetensors. See docs/training.md.
"""

from __future__ import annotations

import sys

from _common import make_parser, run_main

from napari_genselfdiff.core.training.finetune import FinetuneConfig, finetune


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(FinetuneConfig, __doc__.splitlines()[0])
    return run_main(FinetuneConfig, finetune, parser.parse_args(argv), "finetune")


if __name__ == "__main__":
    sys.exit(main())
