"""Inserting a result layer into the viewer in pieces, so that no single event-loop turn stalls the GUI.

Inserting one layer into napari 0.9's layer list does, in one turn: the vispy visual, the layer
controls, the selection change and, for a Labels layer, the vispy visuals of its two editing overlays
(the polygon tool's outline and the brush stroke), which cost about as much as the layer's own visual
(``benchmarks/ui_layers.py --profile``; docs/performance.md, "UI stalls when results are added").
:func:`insert_in_pieces` leaves out what can wait:

- the editing overlays: napari creates an overlay's visual only once the overlay is visible, so they
  are hidden during the insertion and shown again one per later turn (the generator's ``yield``s),
  exactly as napari made them (enabled by the layer's mode as before).

Measured inside the widget on the idle machine (``benchmarks/ui_layers_before_after.sh``; docs/performance.md):
a Labels layer's insertion fell from 60-77 to 39-55 ms, each overlay then 10-19 ms in a turn of its own. What is
left of an insertion (the layer's visual, its controls, the selection) happens in napari's ``insert`` and cannot
be split by a plugin.

This uses ``Layer._overlays``, which is not public napari API, on a layer the plugin made itself;
where a napari version lacks it the layer is inserted as ``insert`` would. Leaving the selection
alone as well would save about a fifth more (measured on a busy machine), but the only way (``LayerList._activate_on_insert``)
is private API that napari warns a plugin against, so the selection changes as napari does it.
"""

from __future__ import annotations

from collections.abc import Generator

#: the Labels overlays whose visuals are made after the insertion, in this order
DEFERRED_OVERLAYS = ("brush_stroke", "polygon")


def _hidden_overlays(layer) -> list:
    """The layer's editing overlays that are visible now, hidden (to be shown again later)."""
    overlays = getattr(layer, "_overlays", None)
    hidden = []
    for key in DEFERRED_OVERLAYS:
        overlay = overlays.get(key) if hasattr(overlays, "get") else None
        if overlay is not None and getattr(overlay, "visible", False):
            overlay.visible = False
            hidden.append(overlay)
    return hidden


def insert_in_pieces(layers, index: int, layer) -> Generator[None, None, None]:
    """Insert ``layer`` at ``index`` of ``layers`` now, with its editing overlays' visuals
    made one per later step (a generator: run it to its end; each ``yield`` is a point where the event
    loop may run). Closing the generator early shows the overlays at once."""
    hidden = _hidden_overlays(layer)
    try:
        layers.insert(index, layer)
        while hidden:
            yield
            hidden.pop(0).visible = True
    finally:
        for overlay in hidden:  # closed early, or the insertion failed: nothing stays hidden
            overlay.visible = True


def run_in_turns(steps: Generator, delay_ms: int = 0) -> None:
    """Run a generator of main-thread steps (such as :func:`insert_in_pieces`) to its first ``yield``
    now and each further step in a later event-loop turn (for callers without a step queue of their own)."""
    from qtpy.QtCore import QTimer

    def step() -> None:
        if next(steps, StopIteration) is not StopIteration:
            QTimer.singleShot(delay_ms, step)

    step()
