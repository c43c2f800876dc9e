"""The output kinds a model file may declare (``output``) and the head channels each needs.

What the kinds mean and how their channels are read: :mod:`..inference.outputs`.
"""

from __future__ import annotations

OUTPUT_KINDS = ("classes", "contour", "distance", "hover")

#: Cue maps each kind yields after :func:`split_output`.
CUE_CHANNELS = {"classes": 0, "contour": 1, "distance": 1, "hover": 2}


def check_output(kind: str, n_classes: int) -> None:
    """Raise ValueError when ``kind`` is unknown or does not fit ``n_classes``."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {', '.join(OUTPUT_KINDS)}.")
    if kind != "classes" and n_classes != 2:
        raise ValueError(f"the {kind!r} output splits one foreground class (background + 1 class); "
                         f"got {n_classes} classes.")


def network_channels(kind: str, n_classes: int) -> int:
    """Channels of the network's head for ``kind`` and ``n_classes`` classes."""
    check_output(kind, n_classes)
    if kind == "contour":
        return 3
    return n_classes + CUE_CHANNELS[kind]
