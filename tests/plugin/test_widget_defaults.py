"""The widget's fields and the training panels' configurations start at the core's defaults (core/defaults.py)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core import defaults as D

pytestmark = pytest.mark.gui


@pytest.mark.gui
def test_widget_fields_start_at_the_core_defaults(qtbot, tmp_path, monkeypatch):
    """The panels are built over a bare layer list instead of a viewer (cheap): only their fields are
    looked at."""
    from types import SimpleNamespace

    from napari.components import LayerList

    from napari_genselfdiff.plugin._state import PluginState
    from napari_genselfdiff.plugin._testing import isolate
    from napari_genselfdiff.plugin.widgets import finetune_panel, model_panel
    from napari_genselfdiff.plugin.widgets._training_common import size_fields
    from napari_genselfdiff.plugin.widgets.segment_panel import SegmentPanel

    isolate(monkeypatch, tmp_path)
    state = PluginState(SimpleNamespace(layers=LayerList()))
    assert (state.device, state.precision) == (D.DEFAULT_DEVICE, D.DEFAULT_PRECISION)
    segment = SegmentPanel(state)
    qtbot.addWidget(segment)
    assert segment._tile.value() == D.INFERENCE_TILE
    settings = segment.inference_settings()  # what a Segment click computes with
    assert (settings.tile, settings.overlap) == (D.INFERENCE_TILE, D.INFERENCE_OVERLAP)
    assert (settings.device, settings.precision) == (D.DEFAULT_DEVICE, D.DEFAULT_PRECISION)
    assert settings.flips is False and not segment._flips.isChecked()  # test-time flips: off unless asked
    segment._tile.setValue(256)
    assert segment.inference_settings().overlap == D.overlap_for_tile(256) == 32
    segment._flips.setChecked(True)
    assert segment.inference_settings().flips is True
    models = model_panel.ModelPanel(state)
    qtbot.addWidget(models)
    assert tuple(models._device.itemText(i) for i in range(models._device.count())) == D.DEVICE_CHOICES
    assert tuple(models._precision.itemText(i) for i in range(models._precision.count())) == D.PRECISION_CHOICES
    arch, patch, _, batch = size_fields(steps=10, arch_tooltip="")
    for box in (arch, patch, batch):
        qtbot.addWidget(box)
    assert tuple(arch.itemText(i) for i in range(arch.count())) == D.WIDGET_PRESETS
    assert arch.currentText() == D.WIDGET_PRESET
    assert (patch.value(), batch.value()) == (D.WIDGET_TRAINING_PATCH, D.WIDGET_TRAINING_BATCH)
    assert finetune_panel.PRESET_NAMES == D.WIDGET_PRESETS


@pytest.mark.gui
def test_training_panels_configs_start_at_the_core_defaults(qtbot, tmp_path, monkeypatch):
    """What Start would train with, before anything is changed: the core's widget training defaults,
    the core's classes and inference tile, the state's device and precision; one run folder rule."""
    from types import SimpleNamespace

    from napari.components import LayerList

    from napari_genselfdiff.core.training.corrections import patch_stride
    from napari_genselfdiff.plugin._settings import data_dir
    from napari_genselfdiff.plugin._state import PluginState
    from napari_genselfdiff.plugin._testing import isolate
    from napari_genselfdiff.plugin.widgets.finetune_panel import START_SCRATCH, FinetunePanel
    from napari_genselfdiff.plugin.widgets.pretrain_panel import PretrainPanel

    isolate(monkeypatch, tmp_path)
    state = PluginState(SimpleNamespace(layers=LayerList()))
    pretrain = PretrainPanel(state)
    finetune = FinetunePanel(state, pretrain_panel=pretrain)
    for panel in (pretrain, finetune):
        qtbot.addWidget(panel)
    finetune.start_from.setCurrentText(START_SCRATCH)
    finetune.images.edit.setText(str(tmp_path))
    finetune.masks.edit.setText(str(tmp_path))
    for panel, cfg in ((pretrain, pretrain.config()), (finetune, finetune.config())):
        assert cfg.arch == D.WIDGET_PRESET
        assert (cfg.patch_size, cfg.batch) == (D.WIDGET_TRAINING_PATCH, D.WIDGET_TRAINING_BATCH)
        assert cfg.stride == patch_stride(D.WIDGET_TRAINING_PATCH) == D.WIDGET_TRAINING_PATCH // 2
        assert (cfg.device, cfg.precision) == (D.DEFAULT_DEVICE, D.DEFAULT_PRECISION)
        assert cfg.out_dir == str(data_dir() / "runs" / panel.job) and not cfg.resume
    cfg = finetune.config()
    assert cfg.classes == list(D.DEFAULT_CLASSES) and cfg.val_tile == D.INFERENCE_TILE
    # the fine-tune runs the correction recipe the replay chose (core/training/corrections.py)
    from napari_genselfdiff.core.training.corrections import CORRECTION_RECIPE as R

    assert finetune.steps.value() == cfg.steps == R.steps
    assert (cfg.lr, cfg.loss, cfg.freeze_norm, tuple(cfg.betas)) == (R.lr, R.loss, R.freeze_norm, R.betas)
    assert cfg.stain_jitter is R.stain_jitter is True  # chosen on the replay (docs/results.md)
    assert "replay" in finetune.steps.toolTip()
    # "keep what it knows elsewhere" (L2-SP): as the recipe says; from scratch there is nothing to keep
    from napari_genselfdiff.core.training.corrections import KEEP_ELSEWHERE_ANCHOR

    assert finetune.keep_elsewhere.isChecked() is (R.anchor > 0) and cfg.anchor == R.anchor
    assert not finetune.keep_elsewhere.isEnabled() and "L2-SP" in finetune.keep_elsewhere.toolTip()
    finetune.keep_elsewhere.setChecked(True)
    assert finetune.config().anchor == 0.0  # still from scratch: greyed out, not applied
    finetune.start_from.setCurrentIndex(0)  # the current model
    assert finetune.keep_elsewhere.isEnabled()
    monkeypatch.setattr(finetune, "_init_model", lambda: str(tmp_path / "current.safetensors"))
    assert finetune.config().anchor == KEEP_ELSEWHERE_ANCHOR > 0
    finetune.keep_elsewhere.setChecked(False)
    assert finetune.config().anchor == 0.0
    # where it offers pretraining, the Train tab says what pretraining was measured to add
    from napari_genselfdiff.core.training.corrections import PRETRAINING_WORTH

    assert pretrain.worth.text() == PRETRAINING_WORTH and "Measured" in PRETRAINING_WORTH


def test_the_sample_paths_are_one():
    from napari_genselfdiff.cli import run
    from napari_genselfdiff.plugin import _sample_data

    assert run.SAMPLE == _sample_data.SAMPLE == D.SAMPLE_IMAGE and D.SAMPLE_IMAGE.is_file()
    assert _sample_data.SAMPLE_INSTANCES == D.SAMPLE_INSTANCES and D.SAMPLE_INSTANCES.is_file()


def test_the_steps_box_follows_the_corrections_until_the_user_sets_it(qtbot, tmp_path, monkeypatch):
    """One corrected 1000 x 1000 image: 200 steps; three: 600 (the replay's finding); once the user types a
    number, adding or removing pairs leaves it alone."""
    from types import SimpleNamespace

    from napari.components import LayerList

    from napari_genselfdiff.core.annotations import AnnotationSet
    from napari_genselfdiff.plugin._state import PluginState
    from napari_genselfdiff.plugin._testing import isolate
    from napari_genselfdiff.plugin.widgets.finetune_panel import START_SCRATCH, FinetunePanel

    isolate(monkeypatch, tmp_path)
    state = PluginState(SimpleNamespace(layers=LayerList()))
    finetune = FinetunePanel(state)
    qtbot.addWidget(finetune)
    finetune.start_from.setCurrentText(START_SCRATCH)
    image = np.zeros((1000, 1000, 3), np.uint8)
    labels = np.zeros((1000, 1000), np.uint8)
    aset = AnnotationSet(tmp_path / "set")
    aset.add(image, labels, name="a")
    state.open_annotations(aset.folder)
    assert finetune.steps.value() == 200
    for name in ("b", "c"):
        state.annotations.add(image, labels, name=name)
    state.annotations_changed.emit()  # what Mark as corrected emits
    assert finetune.steps.value() == 600 == finetune.config().steps
    assert "follows the corrections" in finetune.steps.toolTip()
    assert finetune.steps_note() == " (3.0 megapixels corrected: 600 steps, 200 per megapixel, from 200 to 600)"
    finetune.steps.setValue(250)  # the user's number
    state.annotations.remove(state.annotations.pairs[0].id)
    state.annotations_changed.emit()
    assert finetune.steps.value() == 250 == finetune.config().steps and finetune.steps_note() == ""
