"""Each default is written once, in ``core/defaults.py``; every front end (command-line flags, config
dataclasses, the model file schema, the napari widget's fields) must show the same value. A front end
that writes its own copy and lets it drift fails here."""

from __future__ import annotations

import dataclasses

import pytest

from napari_genselfdiff.core import defaults as D


def _field_default(cls, name):
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def test_inference_defaults_of_the_core_and_the_command_line():
    from napari_genselfdiff.cli import common
    from napari_genselfdiff.cli.main import build_parser
    from napari_genselfdiff.core.inference import InferenceSettings, Precision
    from napari_genselfdiff.core.inference import device

    settings = InferenceSettings()
    assert (settings.tile, settings.overlap) == (D.INFERENCE_TILE, D.INFERENCE_OVERLAP)
    assert (settings.device, settings.precision) == (D.DEFAULT_DEVICE, D.DEFAULT_PRECISION)
    assert device.Precision is Precision is D.Precision
    assert D.PRECISION_CHOICES == tuple(p.value for p in Precision) and D.PRECISION_CHOICES[0] == "auto"
    assert D.overlap_for_tile(D.INFERENCE_TILE) == D.INFERENCE_OVERLAP  # the widget's rule at the default tile

    for command in (["segment", "x.png", "--out", "out"], ["run"]):
        args = build_parser().parse_args(command)
        assert (args.device, args.precision) == (D.DEFAULT_DEVICE, D.DEFAULT_PRECISION)
        parsed = common.inference_settings(args, instances=False)  # unset flags: the dataclass defaults
        assert (parsed.tile, parsed.overlap) == (D.INFERENCE_TILE, D.INFERENCE_OVERLAP)
    group = build_parser()._subparsers._group_actions[0].choices["segment"]
    choices = {a.dest: tuple(a.choices) for a in group._actions if a.choices}
    assert choices["device"] == D.DEVICE_CHOICES and choices["precision"] == D.PRECISION_CHOICES
    assert (common.DEFAULT_TILE, common.DEFAULT_OVERLAP) == (D.INFERENCE_TILE, D.INFERENCE_OVERLAP)


def test_training_and_model_file_defaults():
    from napari_genselfdiff.core.io.read import IMAGE_SUFFIXES
    from napari_genselfdiff.core.model_files import ModelInfo
    from napari_genselfdiff.core.network import PRESETS
    from napari_genselfdiff.core.training.finetune import FinetuneConfig
    from napari_genselfdiff.core.training.pretrain import PretrainConfig
    from napari_genselfdiff.cli import common

    for cls in (PretrainConfig, FinetuneConfig):
        assert _field_default(cls, "patch_size") == D.TRAINING_PATCH
        assert _field_default(cls, "stride") == D.TRAINING_STRIDE
        assert _field_default(cls, "device") == D.DEFAULT_DEVICE
        assert _field_default(cls, "precision") == D.DEFAULT_PRECISION
        precision = {f.name: f for f in dataclasses.fields(cls)}["precision"]
        assert tuple(precision.metadata["argparse"]["choices"]) == D.PRECISION_CHOICES
    assert _field_default(FinetuneConfig, "classes") == list(D.DEFAULT_CLASSES)
    assert _field_default(ModelInfo, "patch_size") == D.TRAINING_PATCH
    assert set(D.WIDGET_PRESETS) <= set(PRESETS) and D.WIDGET_PRESET in D.WIDGET_PRESETS
    assert common.IMAGE_SUFFIXES == IMAGE_SUFFIXES == D.IMAGE_SUFFIXES


def test_the_sample_paths_are_one():
    from napari_genselfdiff.cli import run
    from napari_genselfdiff.plugin import _sample_data

    assert run.SAMPLE == _sample_data.SAMPLE == D.SAMPLE_IMAGE and D.SAMPLE_IMAGE.is_file()
    assert _sample_data.SAMPLE_INSTANCES == D.SAMPLE_INSTANCES and D.SAMPLE_INSTANCES.is_file()


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
    segment._tile.setValue(256)
    assert segment.inference_settings().overlap == D.overlap_for_tile(256) == 32
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

    from napari_genselfdiff.plugin._settings import data_dir
    from napari_genselfdiff.plugin._state import PluginState
    from napari_genselfdiff.plugin._testing import isolate
    from napari_genselfdiff.plugin.widgets._training_common import patch_stride
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
