"""Entry point of the ``genselfdiff`` console script: parse, dispatch, turn known errors into messages.

Exit codes: 0 success; 1 some inputs failed (each was reported, the others were processed); 2 the
command could not run at all (bad arguments, no model, unreadable model file, missing folder);
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import evaluate, gui, info, run, segment, train
from .common import CommandError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genselfdiff",
        description=(
            "GenSelfDiff-HIS segmentation of H&E images: segment images with a model file, evaluate "
            "predictions against ground truth, inspect a model, train one (pretrain, finetune), or open "
            "the napari plugin."
        ),
        epilog="Run 'genselfdiff COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (run, segment, evaluate, info, train, gui):
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``genselfdiff`` command and return its exit code (the console script exits with it)."""
    from ..core.allocator import keep_freed_memory
    from ..core.errors import GenSelfDiffError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in train.COMMANDS:  # training: its own parser, from the training configuration
        return train.main(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    if args.command in ("segment", "evaluate", "run"):
        keep_freed_memory()  # fewer page faults in the network's buffers (see core/allocator.py)
    try:
        return int(args.func(args) or 0)
    except (GenSelfDiffError, CommandError) as exc:
        # These messages are written for users: no traceback.
        print(f"genselfdiff {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genselfdiff {args.command}: interrupted (finished outputs are complete; none is half-written).",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m napari_genselfdiff.cli.main`
    sys.exit(main())
