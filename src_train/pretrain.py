"""Self-supervised diffusion pretraining on unlabeled H&E images (GenSelfDiff-HIS stage 1).

    python src_train/pretrain.py --images DIR [DIR ...] --out RUN_DIR [--arch tiny|small|default]
        [--size 256] [--stride 64] [--steps N | --epochs E] [--batch 8] [--lr 1e-4] [--resume]
    python src_train/pretrain.py --config src_train/configs/cpu.json --images DIR --out RUN_DIR
    python -m torch.distributed.run --nproc_per_node=4 src_train/pretrain.py --images DIR --out RUN_DIR

Writes RUN_DIR/pretrained.safetensors (+ checkpoints/, metrics.jsonl, config.json). See docs/training.md.
"""

from __future__ import annotations

import sys

from _common import make_parser, run_main

from napari_genselfdiff.core.training.pretrain import PretrainConfig, pretrain


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(PretrainConfig, __doc__.splitlines()[0])
    return run_main(PretrainConfig, pretrain, parser.parse_args(argv), "pretrain")


if __name__ == "__main__":
    sys.exit(main())
