"""The ``genselfdiff`` command line: segment, evaluate, info, run (the README's main job) and gui.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and a ``run(args) -> int``;
:mod:`.main` only dispatches. torch is imported when a command needs it and napari only by ``gui``,
so ``genselfdiff --help`` is quick and the headless commands never load Qt.
"""
