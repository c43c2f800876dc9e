"""The uncertainty map in the widget: the map is shown and the list of fields moves the view."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.mark.gui
def test_widget_shows_the_map_and_the_list_moves_the_view(inline_widget, make_model):
    viewer, widget = inline_widget
    _, _, path = make_model()
    assert widget.model_panel.load(path)
    image = viewer.add_image(np.random.default_rng(1).integers(0, 255, (300, 520, 3), dtype=np.uint8), name="field",
                             rgb=True, translate=(10.0, 20.0))
    panel = widget.segment_panel
    assert panel._uncertainty.isChecked()
    panel.run([image])
    names = [layer.name for layer in viewer.layers]
    assert names == ["field", "field labels", "field uncertainty"]  # the labels stay directly above the image
    umap = viewer.layers["field uncertainty"].data
    assert umap.shape == (300, 520) and not viewer.layers["field uncertainty"].visible
    # the map is not an H&E image: never offered as an image to segment or to pair with labels
    from napari_genselfdiff.plugin._layers import image_layers

    assert [layer.name for layer in image_layers(viewer)] == ["field"]
    assert panel._next.count() == 2 * 3  # 256-px fields of a 300 x 520 image
    first = panel.fields[1][0]
    assert first.score == max(f.score for f in panel.fields[1])
    panel._next.setCurrentRow(0)  # a click on the first row
    cy, cx = viewer.camera.center[-2:]
    assert cy == pytest.approx(10.0 + first.y + first.h / 2 - 0.5) and cx == pytest.approx(20.0 + first.x + first.w / 2 - 0.5)
    # segmenting again replaces the map (no second layer)
    panel.run([image])
    assert [layer.name for layer in viewer.layers] == names
    widget.stop_jobs(30)
