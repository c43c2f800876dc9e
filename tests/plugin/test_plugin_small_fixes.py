"""Small GUI fixes: the training status line never shows the raw log line of a start, a cancelled run
leaves no part-filled bar, the annotation pair list shows whole rows, and slide labels take the class
colours (nucleus gold) like the Segment panel's labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.defaults import class_colour
from napari_genselfdiff.core.training.events import ProgressEvent
from napari_genselfdiff.plugin._testing import isolate, open_widget

pytestmark = pytest.mark.gui


def test_training_status_is_plain_and_cancel_empties_the_bar(qtbot):
    from napari_genselfdiff.plugin.widgets._training_common import RunControls, TrainingRun

    controls = RunControls("Start", "loss")
    qtbot.addWidget(controls)
    run = TrainingRun(controls)
    run.on_event(ProgressEvent(kind="start", step=0, total_steps=40, stage="finetune",
                               message="2 images, nothing held out (val_fraction 0); 49 patches; device cpu"))
    assert controls.status.text() == "Fine-tuning started: 40 steps; the first one may take a moment."
    run.on_event(ProgressEvent(kind="step", step=12, total_steps=40, loss=0.5, stage="finetune"))
    assert controls.bar.value() == 300
    run.on_event(ProgressEvent(kind="validation", step=12, total_steps=40, stage="finetune",
                               metrics={"mean_f1": 0.5}, message="new best mean_f1 0.5000"))
    assert not controls.status.text().startswith("[")
    run.on_event(ProgressEvent(kind="cancelled", step=12, total_steps=40, stage="finetune",
                               message="fine-tuning cancelled at step 12; checkpoint written"))
    assert controls.bar.value() == 0 and "cancelled at step 12" in controls.status.text()
    run.on_event(ProgressEvent(kind="start", step=12, total_steps=40, stage="finetune", message="resume"))
    assert controls.status.text() == "Fine-tuning resumed at step 12 of 40."


def test_pair_list_shows_whole_rows(make_napari_viewer, tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = open_widget(viewer)
    panel = widget.annotation_panel
    assert panel.open_folder(tmp_path / "set")
    name = "TCGA-A7-A13E-01Z-00-DX1 crop 3 (slice 2)"
    viewer.add_image(np.zeros((40, 50, 3), np.uint8), name=name, rgb=True)
    viewer.add_labels(np.ones((40, 50), np.uint8), name=f"{name} labels")
    for _ in range(4):
        panel.select(f"{name} labels", name)
        assert panel.mark_corrected() is not None, panel.status_text()
    widget.tabs.setCurrentIndex(1)
    from qtpy.QtTest import QTest

    QTest.qWait(300)
    rows = panel._list
    metrics = rows.fontMetrics()
    for k in range(rows.count()):
        item = rows.item(k)
        rect = rows.visualItemRect(item)
        assert 0 < rect.height() and rect.width() <= rows.viewport().width(), f"row {k} runs off the list"
        lines = max(1, rect.height() // metrics.lineSpacing())
        assert metrics.horizontalAdvance(item.text()) <= rect.width() * lines, f"row {k} is truncated"
        assert item.toolTip() == item.text()


def test_slide_labels_take_the_class_colours(tmp_path):
    from napari_genselfdiff.core.io.labels_store import create_labels_store
    from napari_genselfdiff.core.model_files import default_classes
    from napari_genselfdiff.plugin._slide_reader import read_labels_store

    classes = default_classes(["background", "nucleus"])
    store = create_labels_store(tmp_path / "s_labels.zarr", 64, 64, mpp=0.25,
                                info={"classes": [{"id": c.id, "name": c.name} for c in classes]}, classes=classes)
    store.arrays[0][:8, :8] = 1
    [(_, kwargs, kind)] = read_labels_store(str(tmp_path / "s_labels.zarr"))
    assert kind == "labels"
    gold = np.asarray(class_colour(1), float) / 255.0
    np.testing.assert_allclose(kwargs["colormap"].map(1), gold, atol=1e-6)
    assert [c["name"] for c in kwargs["metadata"]["genselfdiff"]["classes"]] == ["background", "nucleus"]
