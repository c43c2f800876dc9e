"""The slide widget: Cancel, then Segment again continues the unfinished run."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide
from napari_genselfdiff.core.io.labels_store import open_labels_store, read_resume

pytestmark = pytest.mark.gui


@pytest.mark.gui
def test_slide_widget_cancel_then_segment_again_continues(slide_files, tmp_path, slide_widget):
    from napari_genselfdiff.core.model_files import load_model

    viewer, image, widget, model = slide_widget(slide_files["svs"], tmp_path / "out")
    widget.scope_combo.setCurrentText("Whole slide")
    partial = tmp_path / "out" / "s_labels.zarr.partial"
    shown = widget._progress

    def cancel_after_the_first_band(event):
        shown(event)
        record = read_resume(widget._store_path.with_name(widget._store_path.name + ".partial"))
        if record and record["bands"]:
            widget.cancel()

    widget._progress = cancel_after_the_first_band
    widget.segment_button.click()
    assert widget.last_result is None and "Segment again with the same settings to continue" in widget.status.text()
    assert f"{image.name} labels (cancelled, partial)" in viewer.layers
    kept = np.asarray(open_labels_store(partial).level0).copy()

    widget._progress = shown
    widget.segment_button.click()
    result = widget.last_result
    assert result is not None, widget.status.text()
    assert result.tiles_resumed > 0 and "done before, continued" in widget.status.text()
    assert f"{image.name} labels (cancelled, partial)" not in viewer.layers
    labels = np.asarray(open_labels_store(result.labels_store).level0)
    np.testing.assert_array_equal(labels[kept > 0], kept[kept > 0])
    net, info = load_model(model)
    reference = segment_slide(net, info, slide_files["svs"], tmp_path / "ref", SlideSettings())
    np.testing.assert_array_equal(labels, np.asarray(open_labels_store(reference.labels_store).level0))

    # Another region after a cancel: refused with what differs, until 'Start over' is ticked.
    widget._progress = cancel_after_the_first_band
    widget.segment_button.click()  # (into s_labels-2.zarr.partial: the finished s_labels.zarr is kept)
    assert (tmp_path / "out" / "s_labels-2.zarr.partial").is_dir() and (tmp_path / "out" / "s_labels.zarr").is_dir()
    widget._progress = shown
    viewer.add_shapes([[[10.0, 15.0], [10.0, 65.0], [35.0, 65.0], [35.0, 15.0]]], shape_type="rectangle",
                      name="regions")
    widget.scope_combo.setCurrentText("Shapes")
    widget.shapes_combo.setCurrentText("regions")
    widget.segment_button.click()
    assert "other settings" in widget.status.text() and "region" in widget.status.text()
    widget.restart_check.setChecked(True)
    widget.segment_button.click()
    assert widget.last_result is not None and widget.last_result.tiles_resumed == 0
    assert not widget.restart_check.isChecked()
