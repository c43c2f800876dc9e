"""``genselfdiff pretrain`` and ``genselfdiff finetune``: training from the installed package.

The same flags, config files and messages as ``src_train/pretrain.py`` / ``finetune.py`` (both run
:mod:`napari_genselfdiff.core.training.command`). Their parsers are built only when one of the two
commands runs (the flags come from the training configurations, which import torch), so
``genselfdiff --help`` and the other commands stay quick.
"""

from __future__ import annotations

from collections.abc import Sequence

#: command -> (one-line description, what it does in more words)
COMMANDS = {
    "pretrain": (
        "self-supervised diffusion pretraining on unlabeled H&E images (GenSelfDiff-HIS stage 1)",
        "Writes OUT/pretrained.safetensors (noise head) with checkpoints/, metrics.jsonl and config.json. "
        "Multi-GPU: torchrun --nproc_per_node=4 --no-python genselfdiff pretrain ... See docs/training.md.",
    ),
    "finetune": (
        "fine-tune a pretrained (or a fresh) network for segmentation on image/mask pairs (stage 2)",
        "Masks pair with images by name (img1.tif <-> img1.png / img1_mask.png / img1_labels.tif) and hold class "
        "ids 0..K-1 (0/255 masks are read as 0/1); a mask may also be QuPath GeoJSON (img1.geojson). Writes "
        "OUT/best.safetensors (best held-out mean IoU) and last.safetensors. See docs/training.md.",
    ),
}


def add_parser(subparsers) -> None:
    """List the training commands in ``genselfdiff --help``; :func:`main` parses their flags."""
    for name, (summary, _) in COMMANDS.items():
        parser = subparsers.add_parser(name, help=summary, add_help=False)
        parser.set_defaults(func=lambda args, name=name: main(name, ["--help"]))


def main(command: str, argv: Sequence[str]) -> int:
    """Run ``genselfdiff <command> ARGV`` (command: "pretrain" or "finetune"); returns the exit code."""
    from ..core.training.command import make_parser, run_main

    if command == "pretrain":
        from ..core.training.pretrain import PretrainConfig as config, pretrain as train
    else:
        from ..core.training.finetune import FinetuneConfig as config, finetune as train
    summary, more = COMMANDS[command]
    parser = make_parser(config, f"{summary[0].upper()}{summary[1:]}. {more}", prog=f"genselfdiff {command}")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # --help (0) or a bad flag (2, argparse printed why)
        return int(exc.code or 0)
    return run_main(config, train, args, command)


__all__ = ["COMMANDS", "add_parser", "main"]
