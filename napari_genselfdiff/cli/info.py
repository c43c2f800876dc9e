"""``genselfdiff info``: what a model file is (architecture, classes, provenance, model card)."""

from __future__ import annotations

import argparse
import json

from .common import add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "info", run,
        help="describe a model file",
        description="Print a model file's architecture, classes, normalisation, provenance and model card "
        "(read from its metadata; the weights are not loaded).",
        example="genselfdiff info nuclei.safetensors",
    )
    parser.add_argument("model", metavar="MODEL", help="a .safetensors model file, or a bundled model's name ('default', 'nuclei', ...)")
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON instead")


def run(args: argparse.Namespace) -> int:
    from ..core.model_files import read_model_info

    info = read_model_info(args.model)
    if args.json:
        print(json.dumps({"file": str(info.path), **info.to_dict()}, indent=2))
        return 0
    print(f"file: {info.path}")
    print(info.summary())
    shown = {"data", "steps", "epochs", "date", "parent", "software", "metrics"}  # already in summary()
    rest = {k: v for k, v in info.provenance.items() if k not in shown and v not in (None, "")}
    if rest:
        print("provenance:")
        _print_mapping(rest, indent=2)
    if info.card:
        print("model card:")
        _print_mapping(info.card, indent=2)
    else:
        print("model card: (none)")
    return 0


def _print_mapping(values: dict, indent: int) -> None:
    pad = " " * indent
    for key, value in values.items():
        if isinstance(value, dict):
            print(f"{pad}{key}:")
            _print_mapping(value, indent + 2)
        elif isinstance(value, (list, tuple)):
            print(f"{pad}{key}: {', '.join(map(str, value))}")
        else:
            print(f"{pad}{key}: {value}")
