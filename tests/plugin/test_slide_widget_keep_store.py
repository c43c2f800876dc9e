"""The slide widget never replaces a corrected store: segmenting another region writes the next free name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from napari_genselfdiff.core.inference.slide import SlideSettings, segment_slide
from napari_genselfdiff.core.io.labels_store import open_labels_store
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide

pytestmark = pytest.mark.gui


def _files(store: Path) -> dict[str, str]:
    """Every file of a store, by relative path, with the SHA-256 of its bytes."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file()}


def _shown(layer) -> np.ndarray:
    """The level-0 labels a (multiscale or not) Labels layer shows."""
    return np.asarray(layer.data[0] if layer.multiscale else layer.data)


@pytest.mark.gui
def test_segmenting_another_region_keeps_the_corrected_store(tmp_path, slide_widget):
    from napari_genselfdiff.core.model_files import load_model

    slide = write_synthetic_slide(tmp_path / "s.svs", 600, 800, mpp=0.25, tissue_fraction=0.6, tile=128,
                                  n_levels=2, seed=4).path
    out = tmp_path / "out"
    viewer, image, widget, model = slide_widget(slide, out)
    widget.scope_combo.setCurrentText("Shapes")

    def segment_rectangle(name, y0, x0, y1, x1):  # world coordinates: um at 0.25 um/px
        viewer.add_shapes([[[y0, x0], [y0, x1], [y1, x1], [y1, x0]]], shape_type="rectangle", name=name)
        widget.shapes_combo.setCurrentText(name)
        widget.last_result = None
        widget.segment_button.click()
        assert widget.last_result is not None, widget.status.text()
        return widget.last_result

    # 1. Region A (level-0 rows 40..140, columns 60..260) -> s_labels.zarr.
    first = segment_rectangle("A", 10.0, 15.0, 35.0, 65.0)
    store_a = out / "s_labels.zarr"
    assert first.labels_store == store_a and "kept" not in widget.status.text()
    layer_a = viewer.layers[f"{image.name} labels"]

    # 2. Correct it: every pixel of the 100 x 200 region flipped, saved with 'Save corrections'.
    viewer.layers.selection.active = layer_a
    widget.scope_combo.setCurrentText("Shapes")
    widget.shapes_combo.setCurrentText("A")
    widget.edit_button.click()
    edit = viewer.layers[f"{layer_a.name} edit x60 y40"]
    corrected = (1 - np.asarray(edit.data)).astype(np.asarray(edit.data).dtype)
    edit.data = corrected
    widget.save_edits_button.click()
    assert widget.last_saved == corrected.size, widget.status.text()
    files_a = _files(store_a)
    level0_a = np.asarray(open_labels_store(store_a).level0).copy()
    np.testing.assert_array_equal(level0_a[40:140, 60:260], corrected)
    shown_a = _shown(layer_a).copy()

    # 3. Region B (level-0 rows 200..480, columns 400..760) -> a new store, s_labels-2.zarr.
    second = segment_rectangle("B", 50.0, 100.0, 120.0, 190.0)
    store_b = out / "s_labels-2.zarr"
    assert second.labels_store == store_b
    status = widget.status.text()
    assert "s_labels.zarr exists and is kept as it is" in status and "the new labels are in s_labels-2.zarr" in status

    # The corrected store is untouched, file for file and byte for byte, and so is its layer.
    assert _files(store_a) == files_a
    np.testing.assert_array_equal(np.asarray(open_labels_store(store_a).level0), level0_a)
    assert viewer.layers[f"{image.name} labels"] is layer_a
    np.testing.assert_array_equal(_shown(layer_a), shown_a)

    # The new store holds region B's labels, the same as a run of region B alone, and nothing else.
    net, info = load_model(model)
    reference = segment_slide(net, info, slide, tmp_path / "ref", SlideSettings(region=(400, 200, 360, 280)))
    level0_b = np.asarray(open_labels_store(store_b).level0)
    np.testing.assert_array_equal(level0_b, np.asarray(open_labels_store(reference.labels_store).level0))
    assert level0_b[200:480, 400:760].any()  # labels there (the micro network labels tissue)
    assert not level0_b[40:140, 60:260].any()  # none of region A (nor its correction) is in it
    layer_b = viewer.layers[f"{image.name} labels-2"]
    np.testing.assert_array_equal(_shown(layer_b), level0_b)

    # Once more: -3, and both earlier stores are kept.
    files_b = _files(store_b)
    third = segment_rectangle("C", 100.0, 10.0, 140.0, 40.0)
    assert third.labels_store == out / "s_labels-3.zarr"
    assert "s_labels.zarr, s_labels-2.zarr exist and are kept" in widget.status.text()
    assert _files(store_a) == files_a and _files(store_b) == files_b
    names = {lay.name for lay in viewer.layers}
    assert {f"{image.name} labels", f"{image.name} labels-2", f"{image.name} labels-3"} <= names

    # napari opens the suffixed stores with the plugin's reader, named after the store.
    [reopened] = viewer.open(str(store_b), plugin="napari-genselfdiff")
    assert reopened.name.startswith(f"{image.name} labels-2")  # napari appends " [1]" to a taken name
    np.testing.assert_array_equal(_shown(reopened), level0_b)
