"""``core/inference/driver.py``: the one segmentation loop of ``genselfdiff segment`` and the widget.

Random "micro" networks on synthetic H&E pixels: the driver must give exactly the labels that
``segment`` gives for each image, report a bad image without stopping the others, read loaders
only when their turn comes, and stop computing when closed.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.errors import ImageInputError, ModelFileError
from napari_genselfdiff.core.inference import InferenceSettings, segment
from napari_genselfdiff.core.inference.driver import load_segmentation_model, segment_images
from napari_genselfdiff.core.progress import Returning

SETTINGS = InferenceSettings(tile=32, overlap=8, device="cpu", precision="fp32")


def test_each_image_gets_the_labels_segment_gives_and_a_bad_one_is_reported(make_model, he_image):
    network, info, _ = make_model("micro")
    first, second = he_image(48, 64, seed=1), he_image(40, 40, seed=2)
    read = []

    def lazy():
        read.append("second")
        return second

    images = [("first", first), ("stack", np.zeros((3, 16, 16, 3), np.uint8)), ("second", lazy)]
    events = Returning(segment_images(network, info, images, SETTINGS))
    seen = []
    for event in events:
        seen.append(event)
        if event["kind"] == "start" and event["name"] == "second":
            assert read == []  # the loader is called after its start event, not before
    assert events.value == 2

    kinds = [(e["kind"], e["index"]) for e in seen if e["kind"] != "progress"]
    assert kinds == [("start", 0), ("result", 0), ("start", 1), ("error", 1), ("start", 2), ("result", 2)]
    assert read == ["second"]
    results = {e["name"]: e for e in seen if e["kind"] == "result"}
    for name, image in (("first", first), ("second", second)):
        expected = segment(network, info, image, SETTINGS).labels
        np.testing.assert_array_equal(results[name]["result"].labels, expected)
        assert results[name]["image"] is image and results[name]["seconds"] > 0
    error = next(e for e in seen if e["kind"] == "error")
    assert isinstance(error["error"], ImageInputError) and error["message"] == str(error["error"])
    assert error["count"] == 3 and error["name"] == "stack"

    tiles = [e for e in seen if e["kind"] == "progress" and e["index"] == 0 and e["stage"] == "tiles"]
    assert tiles and tiles[-1]["done"] == tiles[-1]["total"] and {e["count"] for e in tiles} == {3}


def test_errors_outside_the_given_types_end_the_run(make_model, he_image):
    network, info, _ = make_model("micro")

    def unreadable():
        raise OSError("cannot read")

    images = [("gone", unreadable), ("fine", he_image(32, 32))]
    with pytest.raises(OSError, match="cannot read"):
        list(segment_images(network, info, images, SETTINGS))
    events = list(segment_images(network, info, images, SETTINGS, errors=(OSError,)))
    assert [e["kind"] for e in events if e["kind"] in ("error", "result")] == ["error", "result"]


def test_uncertainty_maps_come_with_the_results(make_model, he_image):
    network, info, _ = make_model("micro")
    image = he_image(32, 48, seed=4)
    events = [e for e in segment_images(network, info, [("a", image)], SETTINGS, True) if e["kind"] == "result"]
    (event,) = events
    umap = event["uncertainty"]
    assert umap.shape == (32, 48) and umap.dtype == np.float32 and 0.0 <= umap.min() <= umap.max() <= 1.0
    np.testing.assert_array_equal(event["result"].labels, segment(network, info, image, SETTINGS).labels)


def test_closing_the_generator_stops_the_work(make_model, he_image):
    """Cancel = close: no further tile is computed and the next image is never read."""
    network, info, _ = make_model("micro")
    calls = []
    forward = network.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    network.forward = counting
    read = []
    images = [("big", he_image(96, 96, seed=5)), ("next", lambda: read.append(1) or he_image(32, 32))]
    gen = segment_images(network, info, images, InferenceSettings(tile=32, overlap=8, batch=1, device="cpu",
                                                                   precision="fp32"))
    for event in gen:
        if event["kind"] == "progress" and event["stage"] == "tiles" and event["done"] >= 1:
            break
    done = len(calls)
    assert 0 < done < event["total"]
    gen.close()
    assert len(calls) == done and read == []


def test_load_segmentation_model_refuses_a_noise_model(make_model):
    _, _, path = make_model("micro", head="noise", name="noise")
    with pytest.raises(ModelFileError, match=r"is a pretraining \(noise\) model: it cannot segment\. Fine-tune it"):
        load_segmentation_model(str(path), "cpu")
    _, _, path = make_model("micro", name="classes")
    network, info, device = load_segmentation_model(str(path), "cpu")
    assert info.head == "classes" and str(device) == "cpu" and info.class_names == ["background", "nucleus"]
