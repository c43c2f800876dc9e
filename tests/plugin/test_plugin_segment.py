"""The dock widget: opening from the manifest, segmenting the bundled H&E sample, cancel, re-entry,
stacks, the NOTHREADS switch, and how long the GUI thread stalls while a segmentation runs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.plugin._testing import docked_with_model, isolate, meter_until, open_widget, wait_for

from conftest import GUI_STALL_LIMIT_MS

pytestmark = pytest.mark.gui

CLASSES = ("background", "nucleus", "stroma")


@pytest.fixture
def setup(make_napari_viewer, make_model, tmp_path, monkeypatch):
    """A viewer with the widget docked, a random 3-class micro model chosen, notifications recorded."""
    viewer = make_napari_viewer()
    _, info, path = make_model(classes=CLASSES)
    widget, log = docked_with_model(viewer, path, monkeypatch, tmp_path)
    yield viewer, widget, info, log
    log.close()


def _sample(viewer):
    layers = viewer.open_sample("napari-genselfdiff", "he_nuclei")
    return layers[0]


def test_sample_with_expert_outlines_opens_as_image_and_labels(make_napari_viewer):
    viewer = make_napari_viewer()
    image, truth = viewer.open_sample("napari-genselfdiff", "he_nuclei_truth")
    assert image.rgb and image.data.shape == (512, 512, 3)
    assert truth.__class__.__name__ == "Labels" and truth.data.shape == (512, 512)
    assert len(np.unique(truth.data)) - 1 == truth.data.max() == 170  # 170 nuclei, labelled 1..170
    dark = image.data.astype(float).mean(axis=-1)  # hematoxylin-stained nuclei are darker than the rest
    assert dark[truth.data > 0].mean() < dark[truth.data == 0].mean() - 20


def test_widget_opens_from_manifest(make_napari_viewer, tmp_path, monkeypatch):
    import importlib

    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-genselfdiff")
    for command in manifest.contributions.commands:  # every python_name resolves
        module, _, name = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module), name)), command.id
    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    assert [widget.tabs.tabText(i) for i in range(widget.tabs.count())] == ["Segment", "Correct", "Train"]
    from napari_genselfdiff.core.model_files import bundled_model_path

    if bundled_model_path() is None:  # no model bundled: the panel says so instead of failing
        assert "No model chosen" in widget.model_panel._info.toPlainText()
    else:  # the bundled default model is chosen at once
        assert widget.state.model_path == bundled_model_path() and widget.state.model_info.classes
    assert widget.state.annotations is not None  # the default annotation set folder is opened


def test_segment_sample_gives_labels_with_model_classes(setup):
    viewer, widget, info, log = setup
    image = _sample(viewer)
    assert image.rgb and image.data.shape == (512, 512, 3)
    panel = widget.segment_panel
    panel._instances.setChecked(True)
    assert panel.run() is not None
    wait_for(lambda: not widget.state.running("segment"), 120, "the segmentation")
    assert panel.outcome == "done", log.items
    labels = viewer.layers[f"{image.name} labels"]
    assert labels.data.shape == (512, 512)
    assert labels.data.dtype == np.uint8 and labels.data.max() < len(CLASSES)
    # class names (features shown in the status bar) and colours from the model
    assert list(labels.features["class"]) == list(CLASSES)
    for cls in info.classes[1:]:
        assert np.allclose(labels.colormap.map(cls.id), np.array(cls.color) / 255.0, atol=1e-3)
    assert labels.colormap.map(0)[3] == 0  # background transparent
    nuclei = viewer.layers[f"{image.name} nuclei"]
    assert nuclei.data.shape == (512, 512)
    assert "Segmented 1 image" in panel._status.text()


def test_second_click_while_running_starts_nothing(setup):
    viewer, widget, _, log = setup
    _sample(viewer)
    panel = widget.segment_panel
    panel._tile.setValue(128)
    first = panel.run()
    assert first is not None and not panel._run.isEnabled() and panel._cancel.isEnabled()
    assert panel.run() is None
    log.find("already running")
    wait_for(lambda: not widget.state.running("segment"), 120, "the segmentation")
    assert len([layer for layer in viewer.layers if layer.name.endswith("labels")]) == 1
    assert panel._run.isEnabled() and not panel._cancel.isEnabled()


def test_cancel_stops_segmentation(setup):
    viewer, widget, _, log = setup
    _sample(viewer)
    panel = widget.segment_panel
    panel._tile.setValue(64)  # 81 tiles: still running long after the first one
    seen = []

    def cancel_on_first_tile(event):
        seen.append(event)
        if event["kind"] == "progress" and event["done"] == 1:
            panel.cancel()

    worker = panel.run()
    worker.yielded.connect(cancel_on_first_tile)
    wait_for(lambda: not widget.state.running("segment"), 120, "the cancelled segmentation")
    assert panel.outcome == "cancelled"
    assert max(e.get("done", 0) for e in seen) < e_total(seen)
    assert not [layer for layer in viewer.layers if layer.name.endswith("labels")]
    log.find("cancelled")
    assert panel._run.isEnabled()


def e_total(events) -> int:
    return max(e.get("total", 0) for e in events)


def test_gui_stall_while_segmenting(make_napari_viewer, make_model, tmp_path, monkeypatch, capsys):
    """The main thread keeps running its event loop while the worker segments (conftest.GUI_STALL_LIMIT_MS).

    The window runs from the click to the moment the result reaches the main thread. Adding the
    result layer afterwards is napari's own main-thread work (vispy visuals for a new layer); it
    is timed and printed separately.
    """
    import time

    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    widget.model_panel.set_precision("fp32")  # the stall of a job, not of bf16 emulation on an AVX2-only CPU
    _, _, path = make_model(preset="tiny", classes=CLASSES, name="tiny")
    widget.model_panel.load(path)
    _sample(viewer)
    panel = widget.segment_panel
    panel._tile.setValue(256)
    meter, add_seconds = meter_until(panel, "_add_layers", monkeypatch)
    click = time.perf_counter()
    panel.run()
    click = time.perf_counter() - click
    wait_for(lambda: not widget.state.running("segment"), 180, "the segmentation")
    stall = meter.max_gap_ms
    assert panel.outcome == "done"
    with capsys.disabled():
        print(f"\n[stall] segment (tiny preset, 512x512, 9 tiles of 256, {panel.last_seconds:.1f} s): max GUI gap "
              f"{stall:.1f} ms over {meter.ticks} ticks (click handler {1000 * click:.0f} ms; adding the result "
              f"layer afterwards, napari's own work: {1000 * add_seconds[0]:.0f} ms)")
    assert meter.ticks > 20
    assert stall <= GUI_STALL_LIMIT_MS


def test_stack_segments_displayed_slice(setup):
    viewer, widget, _, log = setup
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (3, 64, 96, 3), dtype=np.uint8)
    layer = viewer.add_image(stack, name="stack", rgb=True)
    viewer.dims.set_current_step(0, 2)
    panel = widget.segment_panel
    panel.run([layer])
    wait_for(lambda: not widget.state.running("segment"), 60, "the segmentation")
    labels = viewer.layers["stack labels (slice 2)"]
    assert labels.data.shape == (64, 96)
    assert "only the displayed slice 2 was segmented" in panel.status_text()  # the full note stays in the panel


def test_nothreads_switch_runs_inline(setup, monkeypatch):
    viewer, widget, _, _ = setup
    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
    viewer.add_image(np.full((64, 64, 3), 200, np.uint8), name="flat")
    worker = widget.segment_panel.run()
    # Synchronous: finished before run() returned, and the layer is there without waiting.
    assert not worker.is_running and not widget.state.running("segment")
    assert viewer.layers["flat labels"].data.shape == (64, 64)


def test_precision_setting_reaches_segmentation_and_training(setup, he_image, monkeypatch, tmp_path):
    """The Model panel's precision ("auto" by default) is what segmentation and training compute in."""
    from napari_genselfdiff.plugin.widgets import segment_panel as module

    viewer, widget, _, _ = setup
    assert widget.model_panel._precision.itemText(0) == "auto"  # the default a user gets (the fixture chose fp32)
    with pytest.raises(ValueError, match="fp64"):
        widget.model_panel.set_precision("fp64")
    widget.model_panel.set_precision("bf16")
    assert widget.state.precision == "bf16" and "(bf16)" in widget.model_panel._device_label.text()

    seen = []
    real = module.segment_images

    def spy(network, info, planes, settings, *args, **kwargs):
        seen.append(settings.precision)
        return (yield from real(network, info, planes, settings, *args, **kwargs))

    monkeypatch.setattr(module, "segment_images", spy)
    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")  # inline: done when run() returns
    viewer.add_image(he_image(48, 64), name="small")  # small: bf16 is emulated on CPUs without it
    widget.segment_panel.run()
    assert seen == ["bf16"] and widget.segment_panel.outcome == "done"
    assert "on cpu (bf16)" in widget.segment_panel.status_text()

    assert widget.pretrain_panel.config().precision == "bf16"
    widget.model_panel.set_precision("fp32")
    images = tmp_path / "images"
    images.mkdir()
    finetune = widget.finetune_panel
    finetune.images.edit.setText(str(images))
    finetune.masks.edit.setText(str(images))
    finetune.run_dir.setText(str(tmp_path / "run"))
    assert finetune.config().precision == "fp32"
    assert widget.pretrain_panel.config().precision == "fp32"
