"""``genselfdiff gui``: open napari with the plugin's widget docked (and the given images opened).

The same as ``napari -w napari-genselfdiff IMAGE...``; napari (and with it Qt) is imported only here.
"""

from __future__ import annotations

import argparse
import os
import sys

from .common import CommandError, add_command

PLUGIN = "napari-genselfdiff"


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers, "gui", run,
        help="open napari with the GenSelfDiff widget",
        description="Open napari with the napari-genselfdiff widget docked, and open the given images.",
        example="genselfdiff gui slide1.tif",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image files to open")


def run(args: argparse.Namespace) -> int:
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise CommandError(
            "no display: napari needs a desktop session (DISPLAY is not set). On a headless machine use "
            "'genselfdiff segment' or 'genselfdiff run', or start the GUI under xvfb-run for testing."
        )
    try:
        import napari
    except ImportError as exc:
        raise CommandError(
            f"napari cannot be imported ({exc}); install the GUI extra: pip install 'napari-genselfdiff[gui]' (napari and a Qt binding)."
        ) from exc

    viewer = napari.Viewer(title="napari-genselfdiff")
    if args.images:
        viewer.open(args.images, stack=False)
    try:
        viewer.window.add_plugin_dock_widget(PLUGIN)
    except Exception as exc:  # napari raises several types for a plugin it cannot dock
        print(f"genselfdiff gui: warning: the {PLUGIN} widget could not be docked ({exc}); "
              "open it from the Plugins menu.", file=sys.stderr)
    napari.run()
    return 0
