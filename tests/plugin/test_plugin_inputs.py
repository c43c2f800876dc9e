"""Bad inputs: each gives a clear message in full in the status line of the panel the user acted in,
a short notification that fits napari's toast, and nothing is lost (no layer replaced, the previous
model kept, no file written). Workers run inline (GENSELFDIFF_NOTHREADS) to keep this quick.

The messages asserted here are the ones docs/usage.md lists."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from napari_genselfdiff.plugin._notify import TOAST_CHARS
from napari_genselfdiff.plugin._testing import NotificationLog

pytestmark = pytest.mark.gui


@pytest.fixture
def inline(inline_widget):
    viewer, widget = inline_widget
    log = NotificationLog()
    yield viewer, widget, log
    log.close()


def said(panel, log, text: str, severity: str) -> str:
    """The panel's status line holds ``text`` in full; a toast of ``severity`` came, and every toast fits."""
    status = panel.status_text()
    assert text.lower() in status.lower(), (text, status)
    assert log.messages(severity), (severity, log.items)
    assert all(len(message) <= TOAST_CHARS for _, message in log.items), log.items
    return status


def _segment(widget, log, layer):
    log.clear()
    widget.segment_panel.run([layer])
    return log


def test_bad_images_and_models(inline, make_model, tmp_path, capsys):
    viewer, widget, log = inline
    panel = widget.segment_panel
    shown = {}

    # no model chosen (yet, or any more)
    widget.state.clear_model()
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="rgb")
    panel.run()
    shown["no model"] = said(panel, log, "Cannot segment: no model chosen: pick a model file", "error")
    viewer.layers.clear()

    # corrupt, truncated and pickled model files: refused, the previous model stays
    _, _, good = make_model(classes=("background", "nucleus"))
    assert widget.model_panel.load(good)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(np.random.default_rng(0).bytes(300))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-5000])
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    disguised = tmp_path / "disguised.safetensors"
    disguised.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    for name, path, text in (
        ("corrupt model", garbage, "Cannot use this model"),
        ("truncated model", truncated, "the weights cannot be read"),
        ("pickled model (.pt)", pickled, "never unpickles"),
        ("pickle renamed .safetensors", disguised, "pickled (torch.save) file"),
    ):
        log.clear()
        assert not widget.model_panel.load(path)
        shown[name] = said(widget.model_panel, log, text, "error")
        assert widget.state.model_path == good
    _, _, noise = make_model(head="noise", name="pretrained")
    widget.model_panel.load(noise)
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="rgb")
    panel.run()
    shown["pretraining model"] = said(panel, log, "pretraining (noise) model", "error")
    widget.model_panel.load(good)
    viewer.layers.clear()

    # no image layer
    log.clear()
    panel.run()
    shown["no image layer"] = said(panel, log, "No image layer to segment: open an H&E image first", "error")

    # conversions with a note: grayscale, RGBA, 16-bit, float in [0, 255]
    rng = np.random.default_rng(0)
    cases = {
        "grayscale": (rng.integers(0, 255, (32, 32), dtype=np.uint8), "grayscale expanded to 3 equal channels"),
        "RGBA": (rng.integers(0, 255, (32, 32, 4), dtype=np.uint8), "alpha channel dropped"),
        "16-bit": (rng.integers(0, 4000, (32, 32, 3), dtype=np.uint16), "uint16 image rescaled"),
        "float 0-255": (rng.uniform(0, 255, (32, 32, 3)).astype(np.float32), "float image in [0, 255] scaled"),
    }
    for name, (data, text) in cases.items():
        layer = viewer.add_image(data, name=name, rgb=data.ndim == 3)
        _segment(widget, log, layer)
        shown[name] = said(panel, log, text, "warning")
        assert panel.status_text().startswith("Segmented 1 image(s)")  # the job's last word, with the note
        assert viewer.layers[f"{name} labels"].data.shape == (32, 32)

    # refused: negative floats, and a stack shown in 3-D
    layer = viewer.add_image(rng.uniform(-1, 1, (32, 32, 3)).astype(np.float32), name="negative", rgb=True)
    _segment(widget, log, layer)
    shown["negative float"] = said(panel, log, "float image with negative values (min -1)", "error")
    assert "negative labels" not in viewer.layers
    stack = viewer.add_image(rng.integers(0, 255, (4, 32, 32), dtype=np.uint8), name="z-stack")
    viewer.dims.ndisplay = 3
    _segment(widget, log, stack)
    shown["3-D stack in the 3-D view"] = said(panel, log, "switch to the 2-D view", "error")
    viewer.dims.ndisplay = 2
    viewer.dims.set_current_step(0, 1)
    _segment(widget, log, stack)
    shown["3-D stack / time series (2-D view)"] = said(panel, log, "only the displayed slice 1 was segmented", "warning")
    assert viewer.layers["z-stack labels (slice 1)"].data.shape == (32, 32)
    with capsys.disabled():
        print("\n[messages]")
        for name, text in shown.items():
            print(f"  {name}: {text}")


def test_bad_annotation_and_export_inputs(inline, tmp_path, capsys):
    viewer, widget, log = inline
    shown = {}
    annotate, export = widget.annotation_panel, widget.export_panel
    # nothing to mark
    annotate.mark_corrected()
    shown["no labels layer"] = said(annotate, log, "Nothing to mark: there is no labels layer", "error")
    # labels whose shape differs from the image
    image = viewer.add_image(np.zeros((40, 50, 3), np.uint8), name="slide", rgb=True)
    labels = viewer.add_labels(np.zeros((40, 48), np.uint8), name="slide labels")
    annotate.select(labels.name, image.name)
    log.clear()
    assert annotate.mark_corrected() is None
    shown["labels shape differs"] = said(annotate, log, "has shape (40, 48) but the image 'slide' is (40, 50)", "error")
    assert len(widget.state.annotations) == 0
    # an empty annotation set at export
    export.set_folder(tmp_path / "out")
    log.clear()
    assert export.export() is None
    shown["empty annotation set"] = said(export, log, "the annotation set is empty", "error")
    # an unwritable export folder (a path below a file: unwritable even for root)
    viewer.layers.remove(labels)
    good = viewer.add_labels(np.ones((40, 50), np.uint8), name="slide labels")
    annotate.select(good.name, image.name)
    annotate.mark_corrected()
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    export.set_folder(blocker / "out")
    log.clear()
    assert export.export() is None
    shown["unwritable export folder"] = said(export, log, "cannot write to the export folder", "error")
    assert "Not a directory" in shown["unwritable export folder"]
    # the export "folder" is itself a file: said so, not "(File exists)"
    export.set_folder(blocker)
    log.clear()
    assert export.export() is None
    shown["export folder is a file"] = said(export, log, "is a file, not a folder", "error")
    assert "File exists" not in shown["export folder is a file"]
    # an unusable annotation set folder keeps the open set
    log.clear()
    assert not annotate.open_folder(blocker)
    shown["annotation folder is a file"] = said(annotate, log, "is a file, not a folder", "error")
    assert len(widget.state.annotations) == 1
    with capsys.disabled():
        print("\n[messages]")
        for name, text in shown.items():
            print(f"  {name}: {text}")
