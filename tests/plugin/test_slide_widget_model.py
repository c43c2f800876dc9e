"""The slide widget's model: the bundled model offered and chosen by default, resolved by THE core
resolver (names and paths as on the command line, a pretraining model refused with its one message),
and segmentation with the device, precision and tile of the annotation widget's Model and Segment
panels when that widget is docked in the same viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.io.labels_store import open_labels_store
from napari_genselfdiff.core.io.synthetic_slide import write_synthetic_slide
from napari_genselfdiff.core.model_files import bundled_model_path, bundled_models, pretraining_model_message
from napari_genselfdiff.plugin._testing import docked_with_model

pytestmark = pytest.mark.gui


@pytest.fixture
def slide(tmp_path):
    path = tmp_path / "one.svs"
    write_synthetic_slide(path, 256, 256, mpp=0.25, tissue_fraction=0.6, tile=128, n_levels=2, seed=3)
    return path


@pytest.fixture
def sample_slide(tmp_path):
    """The bundled H&E sample (MoNuSeg, 40x) as a tiled TIFF at 0.25 um/px: real nuclei to find."""
    import imageio.v3 as iio
    import tifffile

    from napari_genselfdiff.core.defaults import SAMPLE_IMAGE

    path = tmp_path / "sample.tif"
    image = np.ascontiguousarray(iio.imread(SAMPLE_IMAGE)[..., :3])
    with tifffile.TiffWriter(path) as tw:  # a two-level pyramid, as slides are
        tw.write(image, tile=(128, 128), photometric="rgb", subifds=1, resolution=(1e4 / 0.25, 1e4 / 0.25),
                 resolutionunit="CENTIMETER")
        tw.write(np.ascontiguousarray(image[::4, ::4]), tile=(128, 128), photometric="rgb", subfiletype=1)
    return path


@pytest.mark.skipif(bundled_model_path() is None, reason="this installation ships no bundled model")
def test_the_bundled_model_is_offered_and_segments_a_slide_by_default(make_napari_viewer, sample_slide, tmp_path,
                                                                      monkeypatch):
    from napari_genselfdiff.plugin._slide_widget import SlideSegmentWidget

    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
    viewer = make_napari_viewer()
    viewer.open(str(sample_slide), plugin="napari-genselfdiff")
    widget = SlideSegmentWidget(viewer)
    names = [widget.model_combo.itemData(i) for i in range(widget.model_combo.count())]
    assert names == list(bundled_models()) and names[0] == "nuclei"
    assert widget.model_choice() == "nuclei"  # chosen without any click
    viewer.add_shapes([[[0.0, 0.0], [0.0, 64.0], [64.0, 64.0], [64.0, 0.0]]], shape_type="rectangle", name="box")
    widget.scope_combo.setCurrentText("Shapes")
    widget.shapes_combo.setCurrentText("box")
    widget.out_edit.setText(str(tmp_path / "out"))
    widget.segment_button.click()
    assert widget.last_result is not None, widget.status.text()
    labels = np.asarray(open_labels_store(widget.last_result.labels_store).level0)
    assert labels.shape == (512, 512)
    assert (labels[:256, :256] == 1).mean() > 0.05  # nuclei in the 256 x 256 px box (64 um at 0.25 um/px)
    assert not labels[320:, 320:].any()  # nothing outside it


def test_the_slide_widget_follows_the_model_panel_and_refuses_a_pretraining_model(
        make_napari_viewer, make_model, slide, tmp_path, monkeypatch):
    from napari_genselfdiff.core.inference import InferenceSettings
    from napari_genselfdiff.plugin._slide_widget import SlideSegmentWidget

    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
    viewer = make_napari_viewer()
    widget = SlideSegmentWidget(viewer)
    alone = widget.inference_settings()
    assert (alone.tile, alone.device, alone.precision) == (InferenceSettings().tile, InferenceSettings().device,
                                                           InferenceSettings().precision)
    _, _, model = make_model()
    main, log = docked_with_model(viewer, model, monkeypatch, tmp_path)
    main.segment_panel._tile.setValue(256)
    main.model_panel._device.setCurrentText("cpu")
    settings = widget.inference_settings()
    assert (settings.tile, settings.device, settings.precision) == (256, "cpu", "fp32")
    assert settings.overlap == main.segment_panel.inference_settings().overlap and not settings.instances
    log.close()

    noise = make_model(head="noise", name="noise")[2]
    viewer.open(str(slide), plugin="napari-genselfdiff")
    widget.model_edit.setText(str(noise))
    widget.segment_button.click()
    assert widget.last_result is None
    assert pretraining_model_message(noise) in widget.status.text()


def test_a_second_bundled_model_is_offered_by_both_widgets(make_napari_viewer, make_model, tmp_path, monkeypatch):
    """A model added to napari_genselfdiff/models/ (e.g. glands) appears in the Model panel and the
    slide widget by its name, beside the default one, and the slide widget resolves it by name."""
    from napari_genselfdiff.core.model_files import resolve_model, store
    from napari_genselfdiff.plugin._slide_widget import SlideSegmentWidget
    from napari_genselfdiff.plugin._testing import isolate, open_widget

    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("default_nuclei", "glands"):
        path = make_model(name=name)[2]
        path.rename(folder / path.name)
    monkeypatch.setattr(store, "BUNDLED_DIR", folder)
    isolate(monkeypatch, tmp_path)
    viewer = make_napari_viewer()
    main = open_widget(viewer)
    texts = [text for text, _, _ in main.model_panel.choices()]
    assert texts[0] == "Default model (bundled)" and "glands (bundled)" in texts
    assert dict((t, f) for t, f, _ in main.model_panel.choices())["glands (bundled)"] == str(folder / "glands.safetensors")
    slide = SlideSegmentWidget(viewer)
    assert [slide.model_combo.itemText(i) for i in range(slide.model_combo.count())] == [
        "nuclei (bundled, default)", "glands (bundled)"]
    slide.model_combo.setCurrentIndex(1)
    assert slide.model_choice() == "glands" and resolve_model(slide.model_choice())[1].path == folder / "glands.safetensors"
