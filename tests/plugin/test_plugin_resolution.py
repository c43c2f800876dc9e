"""The Segment panel and resolutions: the Resolution field is filled from
the layer (a slide's record, a scale in microns), the image is segmented at the model's resolution
and the labels come back in its own pixels, the status says which resolution; a bad typed value is
refused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.inference import InferenceSettings, segment
from napari_genselfdiff.core.inference.resolution import ResampledView, map_back
from napari_genselfdiff.plugin._testing import docked_with_model, wait_for

pytestmark = pytest.mark.gui


@pytest.fixture
def setup(make_napari_viewer, make_model, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    net, info, path = make_model()
    widget, log = docked_with_model(viewer, path, monkeypatch, tmp_path)
    yield viewer, widget, (net, info), log
    log.close()


def test_a_20x_slide_layer_is_segmented_at_the_model_resolution(setup, he_image):
    viewer, widget, (net, info), log = setup
    image = he_image(64, 80, seed=3)
    # as the slide reader opens a 20x slide: scale in microns and the file's record in the metadata
    layer = viewer.add_image(image, rgb=True, name="slide", scale=(0.5, 0.5), units=("um", "um"),
                             metadata={"genselfdiff": {"slide": {"mpp": 0.5, "mpp_source": "file: Aperio MPP"}}})
    panel = widget.segment_panel
    viewer.layers.selection.active = layer
    assert panel._mpp.text() == "0.5"
    assert panel.run() is not None
    wait_for(lambda: not widget.state.running("segment"), 120, "the segmentation")
    assert panel.outcome == "done", log.items
    labels = viewer.layers["slide labels"]
    assert labels.data.shape == (64, 80) and tuple(labels.scale) == (0.5, 0.5)
    assert "0.5 um/px (recorded: file: Aperio MPP)" in panel.status_text()
    assert labels.metadata["genselfdiff"]["resolution"]["source"] == "recorded"
    # what the core gives at 2x, mapped back: the layer holds exactly that
    settings = InferenceSettings(tile=512, overlap=64, device="cpu", precision="fp32")
    fine = segment(net, info, ResampledView(image, 2.0), settings).labels
    np.testing.assert_array_equal(labels.data, map_back(fine, (0, 64), (0, 80), 2.0))


def test_a_typed_resolution_is_given_and_a_bad_one_refused(setup, he_image):
    viewer, widget, _, log = setup
    layer = viewer.add_image(he_image(48, 48, seed=4), rgb=True, name="crop")
    panel = widget.segment_panel
    viewer.layers.selection.active = layer
    assert panel._mpp.text() == ""  # nothing recorded: the placeholder says it will be estimated
    panel._mpp.setText("0")
    assert panel.run() is None
    assert "0 um/px is not a resolution" in panel.status_text() and "0.25 for a 40x scan" in panel.status_text()
    panel._mpp.setText("0.5")
    assert panel.run() is not None
    wait_for(lambda: not widget.state.running("segment"), 120, "the segmentation")
    assert panel.outcome == "done", log.items
    assert viewer.layers["crop labels"].data.shape == (48, 48)
    assert "0.5 um/px (given: Resolution field)" in panel.status_text()


def test_the_empty_resolution_field_says_what_happens_for_the_model_chosen(make_napari_viewer, make_model, tmp_path,
                                                                          monkeypatch):
    """A nuclei model estimates an unrecorded resolution; a gland model that works at 1.24 um/px on
    GlaS images assumes their 0.62 (input_mpp), and the empty field says so."""
    from napari_genselfdiff.core.model_files import save_model

    viewer = make_napari_viewer()
    _, _, nuclei_path = make_model(postprocess={"instances": {"min_size": 4}}, name="nuclei")
    widget, log = docked_with_model(viewer, nuclei_path, monkeypatch, tmp_path)
    panel = widget.segment_panel
    assert panel._mpp.placeholderText() == "not recorded: estimated"
    net, info, _ = make_model(classes=("background", "gland"), postprocess={"instances": {}}, name="gland_net")
    info.mpp, info.input_mpp = 1.24, 0.62
    glands = save_model(tmp_path / "glands.safetensors", net, info)
    assert widget.model_panel.load(glands)
    assert panel._mpp.placeholderText() == "not recorded: 0.62 assumed"
    # its instances are glands, in the checkbox and the layer name, and they stay paired with their labels
    assert panel._instances.text() == "also split glands (instances layer)"
    from napari_genselfdiff.plugin._layers import nuclei_layer_for

    viewer.add_image(np.zeros((40, 56, 3), np.uint8) + 200, rgb=True, name="colon")
    panel._instances.setChecked(True)
    assert panel.run() is not None
    wait_for(lambda: not widget.state.running("segment"), 120, "the segmentation")
    assert panel.outcome == "done", log.items
    assert "colon glands" in viewer.layers and "colon nuclei" not in viewer.layers
    assert nuclei_layer_for(viewer, viewer.layers["colon labels"]) is viewer.layers["colon glands"]
    assert widget.model_panel.load(nuclei_path)
    assert panel._instances.text() == "also split nuclei (instances layer)"
    log.close()
