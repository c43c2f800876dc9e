"""What to correct next (issue 13): the entropy map, fields ranked by it, and the widget's layer + list."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.inference.uncertainty import entropy_map, rank_fields, segment_with_uncertainty


def test_entropy_is_normalised_and_ranks_the_uncertain_field_first():
    logits = np.zeros((3, 40, 60), np.float32)
    logits[0] = 20.0  # certain everywhere ...
    logits[:, 20:40, 30:60] = 0.0  # ... except one corner: all classes equally likely
    u = entropy_map(logits, rows=7)  # bands of 7 rows give the same map
    assert u.dtype == np.float32 and u.shape == (40, 60)
    assert u[0, 0] < 1e-6 and u[30, 45] == pytest.approx(1.0, abs=1e-5)
    fields = rank_fields(u, 20)
    assert len(fields) == 2 * 3 and (fields[0].y, fields[0].x) == (20, 40)
    assert fields[0].score == pytest.approx(1.0, abs=1e-5) and fields[-1].score < 1e-6
    assert [f.score for f in fields] == sorted((f.score for f in fields), reverse=True)
    # edge fields are smaller; corrected fields are left out
    assert {(f.h, f.w) for f in rank_fields(u, 25)} == {(25, 25), (25, 10), (15, 25), (15, 10)}
    known = np.zeros((40, 60), bool)
    known[20:40, 40:60] = True
    assert (20, 40) not in {(f.y, f.x) for f in rank_fields(u, 20, known=known)}
    with pytest.raises(ValueError):
        entropy_map(np.zeros((1, 4, 4)))


def test_segment_with_uncertainty_matches_plain_segmentation(make_model):
    from napari_genselfdiff.core.inference import InferenceSettings, segment
    from napari_genselfdiff.core.inference.predict import run_generator

    network, info, _ = make_model()
    image = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    settings = InferenceSettings(tile=32, overlap=8, device="cpu", precision="fp32")
    result, u = run_generator(segment_with_uncertainty(network, info, image, settings))
    plain = segment(network, info, image, settings)
    assert np.array_equal(result.labels, plain.labels)
    assert u.shape == (48, 40) and 0.0 <= u.min() and u.max() <= 1.0


@pytest.mark.gui
def test_widget_shows_the_map_and_the_list_moves_the_view(make_napari_viewer, make_model, tmp_path, monkeypatch):
    from napari_genselfdiff.plugin._testing import isolate, open_widget

    isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    widget.model_panel.set_precision("fp32")
    _, _, path = make_model()
    assert widget.model_panel.load(path)
    image = viewer.add_image(np.random.default_rng(1).integers(0, 255, (300, 520, 3), dtype=np.uint8), name="field",
                             rgb=True, translate=(10.0, 20.0))
    panel = widget.segment_panel
    assert panel._uncertainty.isChecked()
    panel.run([image])
    names = [layer.name for layer in viewer.layers]
    assert names == ["field", "field labels", "field uncertainty"]  # the labels stay directly above the image
    umap = viewer.layers["field uncertainty"].data
    assert umap.shape == (300, 520) and not viewer.layers["field uncertainty"].visible
    # the map is not an H&E image: never offered as an image to segment or to pair with labels
    from napari_genselfdiff.plugin._layers import image_layers

    assert [layer.name for layer in image_layers(viewer)] == ["field"]
    assert panel._next.count() == 2 * 3  # 256-px fields of a 300 x 520 image
    first = panel.fields[1][0]
    assert first.score == max(f.score for f in panel.fields[1])
    panel._next.setCurrentRow(0)  # a click on the first row
    cy, cx = viewer.camera.center[-2:]
    assert cy == pytest.approx(10.0 + first.y + first.h / 2 - 0.5) and cx == pytest.approx(20.0 + first.x + first.w / 2 - 0.5)
    # segmenting again replaces the map (no second layer)
    panel.run([image])
    assert [layer.name for layer in viewer.layers] == names
    widget.stop_jobs(30)
