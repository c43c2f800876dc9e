"""Annotation and export in the widget: mark corrected (snapshots), remove, the set surviving a viewer
restart, export with the overwrite question, and the reader/writer round trip with classes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.model_files import default_classes
from napari_genselfdiff.plugin._layers import META_KEY, class_colormap, class_features, classes_to_meta
from napari_genselfdiff.plugin._testing import NotificationLog, isolate, open_widget

pytestmark = pytest.mark.gui

CLASSES = default_classes(["background", "nucleus", "stroma"])


def _labels_for(viewer, image_layer, seed=0):
    """A labels layer as the segment panel makes it (names, colours, metadata), without a model."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(image_layer.data.shape[:2], np.uint8)
    for _ in range(6):
        y, x = rng.integers(4, labels.shape[0] - 12), rng.integers(4, labels.shape[1] - 12)
        labels[y : y + 8, x : x + 8] = rng.integers(1, 3)
    return viewer.add_labels(
        labels, name=f"{image_layer.name} labels", colormap=class_colormap(CLASSES),
        features=class_features(CLASSES),
        metadata={META_KEY: {"kind": "classes", "image_layer": image_layer.name, "classes": classes_to_meta(CLASSES)}},
    )


def test_mark_corrected_remove_and_reopen_after_restart(make_napari_viewer, tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    panel = widget.annotation_panel
    folder = tmp_path / "my set"
    assert panel.open_folder(folder)
    image = viewer.add_image(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8), name="slide", rgb=True)
    labels = _labels_for(viewer, image)
    # the combos follow the selected labels layer and guess its image
    viewer.layers.selection.active = labels
    assert panel._labels.currentText() == "slide labels" and panel._image.currentText() == "slide"
    log = NotificationLog()
    first = panel.mark_corrected()
    assert first is not None and first.name == "slide" and first.classes == CLASSES
    assert panel.status_text().startswith("Saved 'slide' as corrected pair 0001")
    log.find("Saved corrected pair 0001")
    before = labels.data.copy()
    labels.data[:] = 2  # the user keeps editing after marking: the stored snapshot must not change
    labels.refresh()
    second = panel.mark_corrected()
    _, stored = widget.state.annotations.load(first.id)
    assert np.array_equal(stored, before)
    assert np.all(widget.state.annotations.load(second.id)[1] == 2)
    assert panel._list.count() == 2 and "2 corrected pair(s)" in panel._count.text()

    widget.state.ask = lambda title, text: False  # "no" keeps the pair
    assert not panel.remove(second.id) and len(widget.state.annotations) == 2
    widget.state.ask = lambda title, text: True
    panel._list.setCurrentRow(1)
    assert panel.remove() and [p.id for p in widget.state.annotations.pairs] == ["0001"]
    log.close()
    viewer.close()

    # A new napari session reopens the same folder and lists the pair.
    viewer2 = make_napari_viewer()
    widget2 = open_widget(viewer2)
    assert widget2.state.annotations.folder == folder
    assert [p.name for p in widget2.state.annotations.pairs] == ["slide"]
    assert widget2.annotation_panel._list.count() == 1
    widget2.annotation_panel.open_pair("0001")
    assert np.array_equal(viewer2.layers["slide [pair 0001] labels"].data, before)


def test_export_asks_before_overwriting_and_reader_reopens_with_classes(make_napari_viewer, tmp_path, monkeypatch):
    from napari.layers import Labels

    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    image = viewer.add_image(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8), name="slide 1", rgb=True)
    labels = _labels_for(viewer, image, seed=1)
    widget.annotation_panel.select(labels.name, image.name)
    widget.annotation_panel.mark_corrected()
    out = tmp_path / "export"
    export = widget.export_panel
    export.set_folder(out)
    report = export.export()
    assert report is not None and report.items == 1
    assert np.array_equal(read_array(out / "slide_1_labels.tif"), labels.data)
    assert np.array_equal(read_array(out / "slide_1_labels.png"), labels.data)
    assert json.loads((out / "slide_1.geojson").read_text())["features"]
    stamp = (out / "slide_1_labels.tif").stat().st_mtime_ns

    log = NotificationLog()
    asked = []
    widget.state.ask = lambda title, text: asked.append(text) or False
    assert export.export() is None
    assert "already exist" in asked[0] and (out / "slide_1_labels.tif").stat().st_mtime_ns == stamp
    log.find("Export cancelled: no file was changed")
    widget.state.ask = lambda title, text: True
    assert export.export() is not None

    # The labels reader reopens the mask as a Labels layer with the classes of classes.json.
    layers = viewer.open(out / "slide_1_labels.tif", plugin="napari-genselfdiff")
    reopened = layers[0]
    assert isinstance(reopened, Labels) and reopened.name == "slide_1 labels"
    assert np.array_equal(reopened.data, labels.data)
    assert list(reopened.features["class"]) == [c.name for c in CLASSES]
    assert np.allclose(reopened.colormap.map(2), np.array(CLASSES[2].color) / 255.0, atol=1e-3)
    # H&E images: an LZW-compressed TIFF and a channel-first TIFF open as RGB image layers.
    import tifffile

    rgb = np.random.default_rng(3).integers(0, 255, (24, 20, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "lzw.tif", rgb, compression="lzw", photometric="rgb")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="minisblack")
    for name in ("lzw.tif", "planar.tif"):
        opened = viewer.open(tmp_path / name, plugin="napari-genselfdiff")[0]
        assert opened.rgb and np.array_equal(opened.data, rgb), name
    # ... and the writer saves a labels layer as TIFF/PNG with classes.json beside it.
    viewer.layers.selection = {labels}
    written = viewer.layers.save(str(tmp_path / "saved" / "x_labels.tif"), selected=True, plugin="napari-genselfdiff")
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["classes.json", "x_labels.tif"]
    assert np.array_equal(read_array(tmp_path / "saved" / "x_labels.tif"), labels.data)
    log.close()


def test_export_selected_layer_with_nuclei(make_napari_viewer, tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    image = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="img", rgb=True)
    labels = _labels_for(viewer, image, seed=2)
    from scipy import ndimage

    nuclei = ndimage.label(labels.data > 0)[0].astype(np.uint16)
    viewer.add_labels(nuclei, name="img nuclei")
    viewer.layers.selection.active = labels
    export = widget.export_panel
    export.use_layer(True)
    export.set_folder(tmp_path / "out")
    report = export.export()
    names = sorted(p.name for p in report.written)
    assert "img_instances.tif" in names and "img_labels.tif" in names
    geo = json.loads((tmp_path / "out" / "img.geojson").read_text())
    assert len(geo["features"]) == nuclei.max()
