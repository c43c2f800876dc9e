"""Correcting a slide in napari: an edit layer painted with napari's tools lands in the labels store."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.inference import InferenceSettings
from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide
from napari_genselfdiff.core.io.labels_store import open_labels_store
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

pytestmark = pytest.mark.gui


@pytest.mark.gui
def test_painting_an_edit_layer_in_napari_lands_in_the_store(tmp_path, make_model, make_napari_viewer,
                                                            monkeypatch):
    from napari_genselfdiff.plugin import _slide_widget
    from napari_genselfdiff.plugin._slide_widget import SlideSegmentWidget

    # 1200 x 1600: a store of two levels, so napari shows it as a multiscale (unpaintable) layer.
    slide = write_synthetic_slide(tmp_path / "s.svs", 1200, 1600, mpp=0.25, tissue_fraction=0.6, tile=128,
                                  n_levels=2, seed=4).path
    net, info, _ = make_model()
    result = segment_slide(net, info, slide, tmp_path, SlideSettings(
        inference=InferenceSettings(device="cpu", precision="fp32", tile=128, overlap=16), tissue=False,
        region=(0, 0, 400, 300)))
    before = np.asarray(open_labels_store(result.labels_store).level0).copy()

    viewer = make_napari_viewer()
    [image] = viewer.open(str(slide), plugin="napari-genselfdiff")
    [store_layer] = viewer.open(str(result.labels_store), plugin="napari-genselfdiff")
    assert store_layer.multiscale and not store_layer.editable  # napari cannot paint it: the reason for edit layers
    widget = SlideSegmentWidget(viewer)
    widget.save_edits_button.click()
    assert "Nothing to save" in widget.status.text()
    # A rectangle in world coordinates (um at 0.25 um/px): level-0 rows 40..140, columns 60..260.
    viewer.add_shapes([[[10.0, 15.0], [10.0, 65.0], [35.0, 65.0], [35.0, 15.0]]], shape_type="rectangle",
                      name="regions")
    widget.scope_combo.setCurrentText("Shapes")
    widget.shapes_combo.setCurrentText("regions")
    viewer.layers.selection.active = store_layer
    widget.edit_button.click()
    edit = viewer.layers[f"{store_layer.name} edit x60 y40"]
    assert edit.editable and not edit.multiscale and edit.data.shape == (100, 200)
    np.testing.assert_array_equal(edit.data, before[40:140, 60:260])
    # It lies exactly over the slide: its data pixel (0, 0) is level-0 pixel (40, 60) of the slide.
    np.testing.assert_allclose(edit.data_to_world((0, 0)), image.data_to_world((40, 60)))

    # Paint with napari's brush (nucleus, 1) and erase (background, 0) in the edit layer's pixels.
    edit.brush_size = 9
    edit.paint((50, 100), 1)
    edit.paint((20, 20), 0)
    painted = np.asarray(edit.data).copy()
    assert (painted != before[40:140, 60:260]).any()
    widget.save_edits_button.click()
    assert widget.last_saved and widget.last_saved > 0 and "Saved" in widget.status.text(), widget.status.text()

    store = open_labels_store(result.labels_store)
    expected = before.copy()
    expected[40:140, 60:260] = painted
    np.testing.assert_array_equal(np.asarray(store.level0), expected)
    assert store.level0[90, 160] == 1 and store.level0[60, 80] == 0  # the brush centres, in level-0 pixels
    np.testing.assert_array_equal(np.asarray(store.arrays[1]), expected[::2, ::2])
    # The store's own layer shows the corrected labels.
    np.testing.assert_array_equal(np.asarray(store_layer.data[0][40:140, 60:260]), painted)

    # A region too large to hold is refused with a sentence.
    widget.scope_combo.setCurrentText("Whole slide")
    monkeypatch.setattr(_slide_widget, "EDIT_MAX_SIDE", 500)
    widget.edit_button.click()
    assert "the region is 1600 x 1200 pixels; correct at most 500 x 500" in widget.status.text()
