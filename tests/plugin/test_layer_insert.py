"""Result layers go in in pieces (issue 24, item 8): a Labels layer's editing overlays (polygon outline,
brush stroke) get their visuals in later event-loop turns than the layer itself, and end up exactly as
napari makes them, so painting works as before. Timings are in benchmarks/ui_layers.py, not here."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.plugin._layer_insert import DEFERRED_OVERLAYS, insert_in_pieces, run_in_turns
from napari_genselfdiff.plugin._testing import docked_with_model

pytestmark = pytest.mark.gui


def _overlay_visuals(viewer, layer) -> set[str]:
    """Which of the layer's overlays have a vispy visual on the canvas now."""
    made = viewer.window._qt_viewer.canvas._layer_overlay_to_visual.get(layer, {})
    return {key for key, overlay in layer._overlays.items() if overlay in made}


def _labels():
    from napari.layers import Labels

    labels = np.zeros((64, 64), np.uint8)
    labels[10:30, 10:30] = 1
    return Labels(labels, name="result labels")


def test_a_labels_layer_goes_in_first_and_its_overlays_one_per_turn_after(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="he")
    layer = _labels()
    steps = insert_in_pieces(viewer.layers, 1, layer)
    next(steps)  # the insertion's turn
    assert viewer.layers[1] is layer
    assert not _overlay_visuals(viewer, layer) & set(DEFERRED_OVERLAYS)  # before the fix: both made here
    next(steps)
    assert _overlay_visuals(viewer, layer) & set(DEFERRED_OVERLAYS) == {DEFERRED_OVERLAYS[0]}
    assert next(steps, "done") == "done"
    assert _overlay_visuals(viewer, layer) >= set(DEFERRED_OVERLAYS)
    assert all(layer._overlays[key].visible for key in DEFERRED_OVERLAYS)
    layer.mode = "paint"  # the brush works as napari made it
    assert layer._overlays["brush_stroke"].enabled and not layer._overlays["polygon"].enabled
    layer.paint((40, 40), 2)
    assert layer.data[40, 40] == 2


def test_an_insertion_stopped_early_or_run_by_timer_leaves_no_overlay_hidden(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    layer = _labels()
    steps = insert_in_pieces(viewer.layers, 0, layer)
    next(steps)
    steps.close()  # e.g. the panel closed between two turns
    assert all(layer._overlays[key].visible for key in DEFERRED_OVERLAYS)
    other = _labels()
    other.name = "other"
    run_in_turns(insert_in_pieces(viewer.layers, 1, other))
    assert other in viewer.layers
    qtbot.waitUntil(lambda: _overlay_visuals(viewer, other) >= set(DEFERRED_OVERLAYS), timeout=2000)


def test_the_segment_panel_adds_its_labels_in_pieces(make_napari_viewer, make_model, tmp_path, monkeypatch,
                                                    he_image, qtbot):
    """Through the widget: at the moment napari inserts the result's labels, their overlays are hidden
    (no visuals made in that turn); once the job is done they are visible and drawn, the labels selected."""
    viewer = make_napari_viewer()
    _, _, path = make_model(classes=("background", "nucleus"))
    widget, log = docked_with_model(viewer, path, monkeypatch, tmp_path)
    viewer.add_image(he_image(96, 96), rgb=True, name="he")
    seen = {}

    def on_inserted(event):
        layer = event.value
        if layer.name == "he labels":
            seen["visible"] = [layer._overlays[key].visible for key in DEFERRED_OVERLAYS]
            seen["visuals"] = _overlay_visuals(viewer, layer) & set(DEFERRED_OVERLAYS)

    viewer.layers.events.inserted.connect(on_inserted)
    panel = widget.segment_panel
    try:
        panel.run()
        qtbot.waitUntil(lambda: panel.outcome is not None, timeout=120_000)
        assert panel.outcome == "done", panel.status_text()
        assert seen == {"visible": [False, False], "visuals": set()}
        labels = viewer.layers["he labels"]
        qtbot.waitUntil(lambda: _overlay_visuals(viewer, labels) >= set(DEFERRED_OVERLAYS), timeout=5000)
        assert viewer.layers.selection.active is labels
    finally:
        viewer.layers.events.inserted.disconnect(on_inserted)
        widget.stop_jobs(60)
        log.close()

