"""Corrections reach the nuclei and the QuPath export, and "No" keeps every edited layer; the
labels layer is the selected one after a run, the status names the model and the layers,
an unchecked fine-tuned model is said to be unchecked, and Cancel empties the progress bar.

The bundled model segments a 160x160 crop of the bundled H&E sample (about 0.5 s on a CPU), so the
nuclei are real ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_genselfdiff.core.export import rasterize_geometry
from napari_genselfdiff.core.io.read import read_array
from napari_genselfdiff.core.model_files import bundled_model_path

pytestmark = pytest.mark.gui

SAMPLE = bundled_model_path().parents[1] / "samples" / "he_nuclei_512.png"


@pytest.fixture
def setup(inline_widget, tmp_path):
    viewer, widget = inline_widget
    widget.close_policy = "stop"
    assert widget.model_panel.load(bundled_model_path())
    assert widget.annotation_panel.open_folder(tmp_path / "set")
    image = viewer.add_image(read_array(SAMPLE)[:160, :160, :3], name="he", rgb=True)
    widget.segment_panel._instances.setChecked(True)
    yield viewer, widget, image
    widget.stop_jobs(30)


def _agree(stored: np.ndarray, labels: np.ndarray) -> bool:
    """Every nucleus pixel in one object, except specks under 30 px touching none (left out, as the
    segmentation leaves them out), and no object on a background pixel."""
    from scipy import ndimage

    if stored[labels == 0].any():
        return False
    orphans, n = ndimage.label((labels > 0) & (stored == 0))
    sizes = np.bincount(orphans.ravel())[1:]
    near = ndimage.binary_dilation(orphans > 0) & (stored > 0)
    return bool(np.all(sizes < 30)) and not near.any()


def _free_disc(labels: np.ndarray, radius: int = 6):
    """A disc of background pixels with a 3-pixel margin of background around it."""
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    for cy in range(radius + 4, labels.shape[0] - radius - 4, 3):
        for cx in range(radius + 4, labels.shape[1] - radius - 4, 3):
            near = (yy - cy) ** 2 + (xx - cx) ** 2 <= (radius + 3) ** 2
            if not labels[near].any():
                return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2, (cy, cx)
    raise AssertionError("no free spot for a painted nucleus")


def test_corrections_reach_the_stored_nuclei_and_the_qupath_export(setup, tmp_path):
    viewer, widget, image = setup
    seg = widget.segment_panel
    seg.run([image])
    labels, nuclei = viewer.layers["he labels"], viewer.layers["he nuclei"]
    assert seg.outcome == "done"
    # the labels are selected (not the uncertainty map added after them), so the brush acts on them
    assert viewer.layers.selection.active is labels
    # the status names the model and the layer it made; the layers record the model
    assert "with 'GenSelfDiff nuclei" in seg.status_text() and "'he labels'" in seg.status_text()
    assert labels.metadata["genselfdiff"]["model_name"].startswith("GenSelfDiff nuclei")
    before = np.asarray(nuclei.data).copy()
    ids, sizes = np.unique(before[before > 0], return_counts=True)
    assert len(ids) >= 5, "the bundled model should find nuclei in the sample"
    erased = int(ids[np.argmax(sizes)])
    disc, centre = _free_disc(np.asarray(labels.data))
    data = np.asarray(labels.data)
    data[before == erased] = 0   # the eraser over a false nucleus
    data[disc] = 1               # the brush over a missed one
    labels.refresh()

    panel = widget.annotation_panel
    panel.select("he labels", "he")
    pair = panel.mark_corrected()
    assert pair is not None, panel.status_text()
    stored = widget.state.annotations.load_instances(pair.id)
    assert _agree(stored, np.asarray(labels.data))                  # every nucleus pixel in one object
    assert not stored[before == erased].any()                      # the erased nucleus is gone
    painted = np.unique(stored[disc])
    assert len(painted) == 1 and painted[0] > before.max()          # the painted one is a new nucleus
    for k in ids:                                                   # the others keep their ids
        if k != erased:
            assert np.all(stored[before == k] == k)
    assert np.array_equal(np.asarray(nuclei.data), stored)          # the viewer shows what was stored
    assert "Nuclei updated from the corrected labels (1 removed, 1 added)" in panel.status_text()

    export = widget.export_panel
    export.set_folder(tmp_path / "out")
    report = export.export()
    assert report is not None, export.status_text()
    features = json.loads((tmp_path / "out" / "he.geojson").read_text())["features"]
    masks = [rasterize_geometry(f["geometry"], stored.shape) for f in features]
    assert len(masks) == len(np.unique(stored)) - 1
    ey, ex = np.argwhere(before == erased).mean(axis=0).round().astype(int)
    assert not any(m[ey, ex] for m in masks) and any(m[centre] for m in masks)


def test_no_to_replacing_edited_labels_keeps_the_labels_and_their_nuclei(setup):
    viewer, widget, image = setup
    seg = widget.segment_panel
    seg.run([image])
    labels, nuclei = viewer.layers["he labels"], viewer.layers["he nuclei"]
    np.asarray(labels.data)[40:120, 40:120] = 0  # the user wipes an area
    labels.refresh()
    edited, old_nuclei = np.asarray(labels.data).copy(), np.asarray(nuclei.data).copy()
    asked = []

    def ask(title, text):
        asked.append(title)
        return False  # No: keep the edited labels

    widget.state.ask = ask
    seg.run([image])
    assert asked == ["Replace the edited labels?"] and seg.outcome == "done"
    assert viewer.layers["he labels"] is labels and np.array_equal(labels.data, edited)
    assert viewer.layers["he nuclei"] is nuclei and np.array_equal(nuclei.data, old_nuclei)  # not replaced
    assert "he labels [1]" in viewer.layers and "he nuclei [1]" in viewer.layers  # the new result beside them
    assert viewer.layers["he nuclei [1]"].data[40:120, 40:120].any()
    panel = widget.annotation_panel
    panel.select("he labels", "he")
    pair = panel.mark_corrected()
    stored = widget.state.annotations.load_instances(pair.id)
    assert not stored[40:120, 40:120].any() and _agree(stored, edited)


def test_cancel_empties_the_progress_bar(setup, monkeypatch):
    from napari_genselfdiff.plugin._testing import wait_for

    viewer, widget, _ = setup
    monkeypatch.delenv("GENSELFDIFF_NOTHREADS")  # a worker thread, as in napari
    whole = viewer.add_image(read_array(SAMPLE)[..., :3], name="whole", rgb=True)
    seg = widget.segment_panel
    seg._tile.setValue(64)  # many tiles: still running long after the first ones

    def cancel_after_some_tiles(event):
        if event["kind"] == "progress" and event["done"] == 3:
            seg.cancel()

    worker = seg.run([whole])
    worker.yielded.connect(cancel_after_some_tiles)
    wait_for(lambda: not widget.state.running("segment"), 120, "the cancelled segmentation")
    assert seg.outcome == "cancelled" and seg._bar.value() == 0
