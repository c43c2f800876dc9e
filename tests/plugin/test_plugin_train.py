"""Pretrain and fine-tune panels: start, pause, resume, cancel on tiny settings, the live curve, the
GUI stall while they run, fine-tuning pausing pretraining and switching the model, preview, and
closing napari with a job running.

Training runs in a child process (see napari_genselfdiff.plugin._subprocess). A new child costs its
imports (torch, ...); a finished one is reused. The tests therefore start as few runs as the
behaviours allow."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtTest import QTest

from napari_genselfdiff.plugin._testing import NotificationLog, isolate, meter_until, open_widget, wait_for

from conftest import GUI_STALL_LIMIT_MS

pytestmark = pytest.mark.gui


def _he(seed: int, size: int = 96) -> np.ndarray:
    from conftest import synthetic_he

    return synthetic_he(size, size, seed=seed)


def _kinds(run) -> list[str]:
    return [e.kind for e in run.events]


def _steps(run) -> int:
    return max([e.step for e in run.events if e.kind == "step"], default=0)


@pytest.fixture
def trainer(make_napari_viewer, tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    widget.model_panel.set_precision("fp32")  # behaviour, not precision: exact and fast on every kind of CPU
    widget.close_policy = "stop"
    log = NotificationLog()
    yield viewer, widget, log
    widget.stop_jobs(60)
    log.close()


def _micro_pretrain(panel, tmp_path, steps=100_000):
    from conftest import micro_config

    panel.architecture = micro_config(head="noise", out_channels=3)
    panel.patch.setValue(32)
    panel.batch.setValue(2)
    panel.steps.setValue(steps)
    panel.checkpoint_every.setValue(3)
    panel.run_dir.setText(str(tmp_path / "pre"))


def test_pretrain_start_pause_resume_cancel_preview(trainer, tmp_path, capsys, monkeypatch):
    viewer, widget, log = trainer
    viewer.add_image(_he(0), name="unlabeled 1", rgb=True)
    viewer.add_image(_he(1), name="unlabeled 2", rgb=True)
    panel = widget.pretrain_panel
    _micro_pretrain(panel, tmp_path)
    meter, _ = meter_until(panel, "_on_returned", monkeypatch)
    assert panel.start() is not None
    assert panel.start() is None  # a second click starts nothing
    log.find("already running")
    assert not panel.controls.start.isEnabled() and panel.controls.cancel.isEnabled()
    wait_for(lambda: _steps(panel.run) >= 3, 120, "three pretraining steps")

    panel.pause()
    wait_for(lambda: "paused" in _kinds(panel.run), 60, "the pause")
    assert panel.controls.pause.text() == "Resume"
    at_pause = _steps(panel.run)
    QTest.qWait(300)
    assert _steps(panel.run) == at_pause and panel.is_paused
    panel.resume()
    wait_for(lambda: _steps(panel.run) >= at_pause + 3, 120, "steps after resuming")
    assert "resumed" in _kinds(panel.run)

    panel.stop()
    wait_for(lambda: not widget.state.running("pretrain"), 120, "the cancelled run to end")
    stall = meter.max_gap_ms
    assert panel.outcome == "cancelled"
    assert _kinds(panel.run)[-1] == "cancelled" and panel.run.events[-1].path is not None
    assert panel.model_path is not None and panel.model_path.is_file()  # the weights so far
    assert len(panel.controls.curve.points) == _steps(panel.run) >= 6  # one curve point per step
    assert panel.controls.start.isEnabled() and not panel.controls.cancel.isEnabled()
    with capsys.disabled():
        print(f"\n[stall] pretrain (training in a child process; {_steps(panel.run)} steps with pause/resume/cancel): "
              f"max GUI gap {stall:.1f} ms over {meter.ticks} ticks")
    assert stall <= GUI_STALL_LIMIT_MS

    # Preview: DDIM samples from the latest weights, as an image layer.
    assert panel.preview(n=2, steps=2) is not None
    wait_for(lambda: panel.preview_worker is None, 120, "the preview")
    preview = viewer.layers["pretraining preview 1"]
    assert preview.rgb and preview.data.dtype == np.uint8


def test_finetune_pauses_pretraining_switches_model_and_closing_stops_jobs(trainer, make_model, tmp_path, capsys,
                                                                         monkeypatch):
    from qtpy.QtGui import QCloseEvent

    from napari_genselfdiff.core.training import find_latest_checkpoint

    viewer, widget, log = trainer
    _, _, path = make_model(classes=("background", "nucleus"))
    assert widget.model_panel.load(path)
    ft = widget.finetune_panel
    assert ft.start() is None  # nothing to train on yet
    assert "Nothing to fine-tune on: the annotation set is empty" in ft.status_text()
    widget.state.ask = lambda title, text: True  # "yes" to "re-segment the other images?"
    for seed in (0, 1, 2):  # 3 pairs: one is held out for validation (fewer hold out nothing)
        image = _he(seed, 64)
        widget.state.annotations.add(image, (image.mean(-1) < 130).astype(np.uint8), name=f"corrected {seed}")
    viewer.add_image(_he(5, 64), name="not yet corrected", rgb=True)
    # A pretraining run in the background.
    pre = widget.pretrain_panel
    _micro_pretrain(pre, tmp_path)
    pre.checkpoint_every.setValue(0)  # only its cancel writes a checkpoint
    pre.use_layers.setChecked(True)
    pre.start()
    wait_for(lambda: _steps(pre.run) >= 1, 120, "pretraining to run")

    ft.patch.setValue(32)
    ft.batch.setValue(2)
    ft.steps.setValue(12)
    ft.run_dir.setText(str(tmp_path / "ft"))
    meter, handler = meter_until(ft, "_on_returned", monkeypatch)
    assert ft.start() is not None
    assert ft.paused_pretraining and pre.is_paused
    wait_for(lambda: _steps(ft.run) >= 2, 120, "fine-tuning steps")
    ft.pause()
    wait_for(lambda: "paused" in _kinds(ft.run), 60, "the fine-tuning pause")
    ft.resume()
    wait_for(lambda: not widget.state.running("finetune"), 180, "fine-tuning")
    stall = meter.max_gap_ms
    assert ft.outcome == "done", log.items
    assert "resumed" in _kinds(ft.run) and "validation" in _kinds(ft.run)
    assert len(ft.controls.curve.points) == 12
    # pretraining was paused during fine-tuning and goes on afterwards
    assert "paused" in _kinds(pre.run)
    wait_for(lambda: "resumed" in _kinds(pre.run), 60, "pretraining to resume")
    assert not pre.is_paused and widget.state.running("pretrain")
    # the widget switched to the new model (same classes) ...
    assert widget.state.model_path == ft.model_path and ft.model_path.name == "best.safetensors"
    assert widget.state.model_info.class_names == ["background", "nucleus"]
    assert str(ft.model_path) in widget.model_panel._info.toPlainText()
    name = widget.state.model_info.display_name
    assert name.startswith("nucleus, fine-tuned on 2 corrected images")  # 3 pairs, one held out
    assert widget.model_panel.choices()[widget.model_panel._choices.currentIndex()][0] == name
    assert ft.status_text().startswith(f"Fine-tuning done after 12 steps: now segmenting with '{name}'")
    assert "Held-out score on 1 image(s): mean_iou" in ft.status_text()
    # ... and re-segmented the image that is not in the annotation set
    wait_for(lambda: not widget.state.running("segment"), 120, "re-segmentation")
    assert viewer.layers["not yet corrected labels"].data.shape == (64, 64)
    with capsys.disabled():
        print(f"\n[stall] fine-tune (child process; 12 steps, pause/resume, validation; pretraining paused): "
              f"max GUI gap {stall:.1f} ms over {meter.ticks} ticks; switching the model and starting the "
              f"re-segmentation then took {1000 * handler[0]:.0f} ms on the main thread")
    assert stall <= GUI_STALL_LIMIT_MS

    # Closing napari while pretraining runs: "keep" refuses, "stop" cancels it with a checkpoint.
    window = viewer.window._qt_window
    widget.close_policy = "keep"
    event = QCloseEvent()
    assert widget._close_filter.eventFilter(window, event) is True and not event.isAccepted()
    assert widget.state.running("pretrain")
    widget.close_policy = "stop"
    assert widget._close_filter.eventFilter(window, QCloseEvent()) is False  # napari may close now
    assert not widget.state.running("pretrain") and pre.outcome == "cancelled"
    assert find_latest_checkpoint(tmp_path / "pre") is not None


def test_finetune_offers_the_model_so_far_and_replaces_it_at_the_end(trainer, make_model, tmp_path):
    """Issue 25: a first model well before the run ends, its re-segmentation offered (not forced); the
    run's final model then replaces it."""
    viewer, widget, log = trainer
    _, _, path = make_model(classes=("background", "nucleus"))
    assert widget.model_panel.load(path)
    asked = []
    widget.state.ask = lambda title, text: asked.append(title) or False  # "no" to re-segmenting
    for seed in (0, 1):
        image = _he(seed, 64)
        widget.state.annotations.add(image, (image.mean(-1) < 130).astype(np.uint8), name=f"corrected {seed}")
    viewer.add_image(_he(5, 64), name="not yet corrected", rgb=True)
    ft = widget.finetune_panel
    ft.patch.setValue(32)
    ft.batch.setValue(2)
    ft.steps.setValue(40)  # a model is written every 10 steps
    ft.run_dir.setText(str(tmp_path / "ft"))
    assert not ft.use_so_far.isEnabled()
    assert ft.start() is not None
    assert not ft.use_so_far.isEnabled()  # nothing written yet
    wait_for(lambda: ft.use_so_far.isEnabled(), 120, "the first model of the run")
    ft.pause()
    wait_for(lambda: "paused" in _kinds(ft.run), 60, "the pause")
    step = int(ft.use_so_far.text().rsplit(" ", 1)[1].rstrip(")"))
    assert 10 <= step < 40
    assert ft.use_model_so_far() is not None
    wait_for(lambda: ft.so_far_worker is None, 60, "the model so far to load")
    so_far = widget.state.model_path
    assert so_far.parent == tmp_path / "ft" and so_far.name.startswith("model-so-far-step-"), so_far
    assert "the model so far" in ft.status_text() and "No held-out score yet" in ft.status_text()
    assert asked == ["Re-segment with the new model?"]  # offered, and "no" re-segments nothing
    assert "not yet corrected labels" not in viewer.layers
    ft.resume()
    wait_for(lambda: not widget.state.running("finetune"), 180, "fine-tuning")
    assert ft.outcome == "done", log.items
    assert widget.state.model_path == ft.model_path != so_far
    assert not ft.use_so_far.isEnabled()
