"""Helpers shared by the subcommands: the command error, the parser of a subcommand, the --model and
inference options, input expansion."""

from __future__ import annotations

import argparse
from pathlib import Path

# core.defaults imports only the standard library, so building the parser imports neither numpy nor torch.
from ..core.defaults import (
    DEFAULT_DEVICE,
    DEFAULT_PRECISION,
    DEVICE_CHOICES,
    IMAGE_SUFFIXES,
    INFERENCE_OVERLAP as DEFAULT_OVERLAP,
    INFERENCE_TILE as DEFAULT_TILE,
    PRECISION_CHOICES,
    UNSUPPORTED_SLIDE_SUFFIXES,
    VENDOR_SLIDE_SUFFIXES,
)

#: What a folder given to a command contributes besides images: vendor slides, and the unsupported
#: slide formats (so that each is refused with a message). A .tif in a folder is an image file here;
#: the core tells a pyramidal one apart when it reads it.
FOLDER_SLIDE_SUFFIXES = VENDOR_SLIDE_SUFFIXES + UNSUPPORTED_SLIDE_SUFFIXES


class CommandError(Exception):
    """A problem with the command as given: printed as one line without a traceback, exit code 2."""


def add_command(subparsers, name: str, run, *, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """The parser of one subcommand: its one-line ``help``, its ``description``, an epilog
    "Example: <example>", and ``run(args) -> int`` as what it calls. Returns it for the arguments."""
    parser = subparsers.add_parser(name, help=help, description=description, epilog=f"Example: {example}")
    parser.set_defaults(func=run)
    return parser


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """--model: a model file or a bundled model's name (default: the bundled default model)."""
    parser.add_argument(
        "--model", default="default", metavar="PATH|NAME",
        help="a .safetensors model file, or the name of a model bundled with the package: 'default' (the "
             "nuclei model, also 'nuclei') or another file of napari_genselfdiff/models/ by its name (default: default)",
    )


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --precision, --tile, --overlap, --batch (None = the InferenceSettings default), --flips."""
    group = parser.add_argument_group("inference")
    group.add_argument(
        "--device", default=DEFAULT_DEVICE, choices=DEVICE_CHOICES,
        help=f"where to compute: auto picks cuda, then mps, then cpu (default: {DEFAULT_DEVICE})",
    )
    group.add_argument(
        "--precision", default=DEFAULT_PRECISION, choices=PRECISION_CHOICES,
        help=f"auto: bf16 on GPUs and on CPUs that compute bf16 natively, else fp32 (default: {DEFAULT_PRECISION})",
    )
    group.add_argument(
        "--tile", type=_positive_int, default=None, metavar="N",
        help=f"largest tile side in pixels; bigger tiles waste less on overlap but need more memory "
        f"(default: {DEFAULT_TILE})",
    )
    group.add_argument(
        "--overlap", type=_non_negative_int, default=None, metavar="N",
        help=f"minimum overlap of neighbouring tiles in pixels, blended smoothly (default: {DEFAULT_OVERLAP})",
    )
    group.add_argument(
        "--batch", type=_positive_int, default=None, metavar="N",
        help="tiles per forward pass (default: 1 on CPU, 8 on GPU)",
    )
    from ..core.defaults import FLIPS_MEASURED

    group.add_argument(
        "--flips", action="store_true",
        help="test-time flips: average the network over each tile and its three mirror images; 4x slower, "
             f"slightly better ({FLIPS_MEASURED}) (default: off)",
    )


def inference_settings(args: argparse.Namespace, *, instances: bool):
    """The InferenceSettings of the parsed options (unset ones keep the dataclass defaults)."""
    from ..core.inference import InferenceSettings

    given = {key: getattr(args, key) for key in ("tile", "overlap", "batch") if getattr(args, key) is not None}
    return InferenceSettings(device=args.device, precision=args.precision, instances=instances,
                             flips=args.flips, **given)


def expand_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Files as given, folders replaced by their image files (sorted, not recursive).

    Returns:
        (paths, errors): the paths to process and one message per folder without images. Files are not
        checked here: reading them reports what is wrong, per file.
    """
    paths: list[Path] = []
    errors: list[str] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            suffixes = IMAGE_SUFFIXES + FOLDER_SLIDE_SUFFIXES
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not found:
                errors.append(f"{path}: folder without image files ({', '.join(suffixes)}).")
            paths.extend(found)
        else:
            paths.append(path)
    return paths, errors


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value
