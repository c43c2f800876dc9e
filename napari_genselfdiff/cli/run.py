"""``genselfdiff run``: the README's main job. Segment the bundled H&E sample (or the images given)
with the default model and write ``<stem>_labels.tif`` and ``<stem>_overlay.png`` into ``out/``.

Unlike ``segment`` it replaces its own earlier outputs (running it twice gives the same files), and it
always writes the overlay, which is what a first look needs. The outlines are those of nucleus
instances when ``--instances`` is given or the model file asks for instance post-processing, else
those of the connected regions of each class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.defaults import SAMPLE_IMAGE as SAMPLE
from .common import add_command, add_inference_arguments, add_model_argument
from .segment import segment_files


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "run", run,
        help="segment the bundled sample (or given images) and write labels + overlays to out/",
        description=(
            "The main job: segment the bundled H&E sample (a 512x512 MoNuSeg crop), or the images "
            "given, with the default model; writes <stem>_labels.tif and <stem>_overlay.png to --out, "
            "replacing earlier outputs of the same names."
        ),
        example="genselfdiff run --model nuclei.safetensors my_image.tif",
    )
    parser.add_argument(
        "images", nargs="*", metavar="IMAGE",
        help=f"image files or folders (default: the bundled sample {SAMPLE.name})",
    )
    add_model_argument(parser)
    parser.add_argument("--out", type=Path, default=Path("out"), metavar="DIR", help="output folder (default: out)")
    parser.add_argument("--instances", action="store_true", help="outline nucleus instances (touching nuclei apart)")
    add_inference_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..core.model_files import read_model_info

    images = args.images or [str(SAMPLE)]
    # Fails first, before any image is read, if the bundled model file is missing (a clear message).
    info = read_model_info(args.model)
    instances = args.instances or bool((info.postprocess or {}).get("instances") is not None)
    return segment_files(
        images,
        model=args.model,
        out_dir=args.out,
        args=args,
        instances=instances,
        write_instances=False,
        overlay=True,
        overwrite=True,
    )
