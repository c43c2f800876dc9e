"""Bad input in napari: the readers refuse an unreadable slide or store with a sentence; the slide widget without a resolution and with shapes off the slide."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.errors import GenSelfDiffError
from napari_genselfdiff.core.io.labels_store import open_labels_store
from napari_genselfdiff.core.io.slide import SlideError
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

pytestmark = pytest.mark.gui


def test_the_napari_readers_refuse_an_unreadable_slide_or_store_with_a_sentence(tmp_path):
    from napari_genselfdiff.plugin._slide_reader import get_labels_store_reader, read_slide

    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(SlideError, match="broken.svs: cannot be read as a whole-slide image"):
        read_slide(str(broken))
    store = tmp_path / "x_labels.zarr"
    store.mkdir()
    (store / ".zgroup").write_text("not json")
    reader = get_labels_store_reader(str(store))
    assert reader is not None
    with pytest.raises(GenSelfDiffError, match="x_labels.zarr: not a readable labels store"):
        reader(str(store))


@pytest.mark.gui
def test_slide_widget_without_a_resolution_and_with_shapes_off_the_slide(tmp_path, slide_widget):
    path = write_synthetic_slide(tmp_path / "nores.tif", 1024, 1024, flavour="none", tile=128, n_levels=2).path
    viewer, image, widget, _ = slide_widget(path, tmp_path / "out")
    assert widget.mpp_edit.text() == ""  # nothing recorded in the file
    # Shapes beyond the slide's edge (world = pixels here: the slide has no resolution).
    viewer.add_shapes([[[2000.0, 2000.0], [2000.0, 2100.0], [2100.0, 2100.0], [2100.0, 2000.0]]],
                      shape_type="rectangle", name="off")
    widget.scope_combo.setCurrentText("Shapes")
    widget.shapes_combo.setCurrentText("off")
    widget.segment_button.click()
    assert "the shapes of 'off' lie outside the slide" in widget.status.text()
    viewer.layers["off"].data = [np.array([[0.0, 0.0], [0.0, 64.0], [64.0, 64.0], [64.0, 0.0]])]
    widget.segment_button.click()
    assert widget.last_result is None
    assert "records no usable resolution" in widget.status.text() and "Resolution field" in widget.status.text()
    assert not (tmp_path / "out" / "nores_labels.zarr.partial").exists()  # refused before any work
    widget.mpp_edit.setText("0.25")
    widget.segment_button.click()
    assert widget.last_result is not None, widget.status.text()
    assert open_labels_store(widget.last_result.labels_store).mpp == 0.25
