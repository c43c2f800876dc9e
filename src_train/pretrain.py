"""Self-supervised diffusion pretraining on unlabeled H&E images (GenSelfDiff-HIS stage 1).

    python src_train/pretrain.py --images DIR [DIR ...] --out RUN_DIR [--arch nuclei|tiny|small|paper]
        [--size 256] [--stride 64] [--steps N | --epochs E] [--batch 8] [--lr 1e-4] [--resume]
    python src_train/pretrain.py --config src_train/configs/cpu.json --images DIR --out RUN_DIR
    python -m torch.distributed.run --nproc_per_node=4 src_train/pretrain.py --images DIR --out RUN_DIR

The same as ``genselfdiff pretrain`` (napari_genselfdiff/cli/train.py). Writes
RUN_DIR/pretrained.safetensors (+ checkpoints/, metrics.jsonl, config.json). See docs/training.md.
"""

from __future__ import annotations

import sys

from napari_genselfdiff.cli.train import main as train_main

import _common  # noqa: F401  (puts the repository on sys.path)


def main(argv: list[str] | None = None) -> int:
    return train_main("pretrain", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
