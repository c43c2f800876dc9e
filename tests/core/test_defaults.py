"""Each default is written once, in ``core/defaults.py``; every front end (command-line flags, config
dataclasses, the model file schema, the napari widget's fields) must show the same value. A front end
that writes its own copy and lets it drift fails here."""

from __future__ import annotations

import dataclasses

from napari_genselfdiff.core import defaults as D


def _field_default(cls, name):
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def test_inference_defaults_of_the_core_and_the_command_line():
    from napari_genselfdiff.cli import common
    from napari_genselfdiff.cli.main import build_parser
    from napari_genselfdiff.core.inference import InferenceSettings, Precision, device

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
    from napari_genselfdiff.cli import common
    from napari_genselfdiff.core.io.read import IMAGE_SUFFIXES
    from napari_genselfdiff.core.model_files import ModelInfo
    from napari_genselfdiff.core.network import PRESETS
    from napari_genselfdiff.core.training.finetune import FinetuneConfig
    from napari_genselfdiff.core.training.pretrain import PretrainConfig

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
    from napari_genselfdiff.core.io import slide

    assert tuple(slide.UNSUPPORTED_SUFFIXES) == D.UNSUPPORTED_SLIDE_SUFFIXES  # each with its message
    assert slide.SLIDE_SUFFIXES == D.VENDOR_SLIDE_SUFFIXES + (".tif", ".tiff")
    assert common.FOLDER_SLIDE_SUFFIXES == D.VENDOR_SLIDE_SUFFIXES + D.UNSUPPORTED_SLIDE_SUFFIXES


