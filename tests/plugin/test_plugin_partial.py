"""The widget under the correction loop's faults and partial annotations: regions from a
Shapes layer or the current view, clear messages for bad input, and edits never overwritten when a
fine-tuning ends and re-segments. See docs/reliability.md."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.core.model_files import default_classes
from napari_genselfdiff.plugin._layers import META_KEY, class_colormap, class_features, classes_to_meta

pytestmark = pytest.mark.gui

CLASSES = default_classes(["background", "nucleus"])


@pytest.fixture
def setup(inline_widget, make_model, tmp_path):
    viewer, widget = inline_widget
    _, _, path = make_model(classes=("background", "nucleus"))
    assert widget.model_panel.load(path)
    assert widget.annotation_panel.open_folder(tmp_path / "set")
    yield viewer, widget
    widget.stop_jobs(30)


def _image_and_labels(viewer, name="slide", shape=(60, 80), translate=(0.0, 0.0)):
    rng = np.random.default_rng(0)
    image = viewer.add_image(rng.integers(0, 255, (*shape, 3), dtype=np.uint8), name=name, rgb=True,
                             translate=translate)
    labels = viewer.add_labels(
        (rng.random(shape) > 0.8).astype(np.uint8), name=f"{name} labels", colormap=class_colormap(CLASSES),
        features=class_features(CLASSES), translate=translate,
        metadata={META_KEY: {"kind": "classes", "image_layer": name, "classes": classes_to_meta(CLASSES)}},
    )
    return image, labels


def test_mark_regions_from_a_shapes_layer_and_the_current_view(setup):
    viewer, widget = setup
    panel = widget.annotation_panel
    image, labels = _image_and_labels(viewer, translate=(100.0, 200.0))
    # world coordinates: the image starts at (100, 200); the rectangle covers its rows 10-29, cols 20-49
    viewer.add_shapes([np.array([[110, 220], [129, 249]])], shape_type="rectangle", name="checked")
    panel.select("slide labels", "slide", region="checked")
    pair = panel.mark_corrected()
    assert pair is not None and pair.partial, panel.status_text()
    known = pair.known_mask()
    assert known[10:30, 20:50].all() and known.sum() == 20 * 30
    assert "Partial: 1 region(s)" in panel.status_text()
    # the current view: centred on the image at a zoom that shows about a quarter of it
    viewer.camera.center = (130.0, 240.0)
    viewer.camera.zoom = float(min(viewer.canvas.size[0] / 30.0, viewer.canvas.size[1] / 40.0))
    panel.select("slide labels", "slide", region="current view")
    view_pair = panel.mark_corrected()
    assert view_pair is not None and view_pair.partial, panel.status_text()
    share = view_pair.known_mask().mean()
    assert 0.05 < share < 0.9
    assert view_pair.known_mask()[30, 40]  # the centre of the view
    # fine-tuning input carries the regions
    items = widget.state.annotations.training_items()
    assert items[0][3] is not None and np.array_equal(items[0][3], known)


def test_bad_input_gives_clear_messages(setup):
    viewer, widget = setup
    panel = widget.annotation_panel
    _image_and_labels(viewer)
    # a region outside the image
    viewer.add_shapes([np.array([[500, 500], [520, 540]])], shape_type="rectangle", name="far")
    panel.select("slide labels", "slide", region="far")
    assert panel.mark_corrected() is None
    assert "Cannot mark as corrected: corrected region 1 (rows 500..520, columns 500..540) lies outside the image " \
           "(60x80 pixels)" in panel.status_text()
    # an empty Shapes layer, and a line (not an area)
    viewer.add_shapes(name="empty")
    panel.select("slide labels", "slide", region="empty")
    assert panel.mark_corrected() is None and "holds no shape" in panel.status_text()
    viewer.add_shapes([np.array([[5, 5], [20, 30]])], shape_type="line", name="stroke")
    panel.select("slide labels", "slide", region="stroke")
    assert panel.mark_corrected() is None and "is a line, not an area" in panel.status_text()
    # labels of the wrong shape
    viewer.add_labels(np.zeros((10, 10), np.uint8), name="small labels")
    panel.select("small labels", "slide", region="whole image")
    assert panel.mark_corrected() is None and "has shape (10, 10) but the image" in panel.status_text()
    assert len(widget.state.annotations) == 0
    # an empty annotation set, then a model with other classes than the set
    ft = widget.finetune_panel
    assert ft.start() is None and "the annotation set is empty" in ft.status_text()
    three = default_classes(["background", "nucleus", "gland"])
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    widget.state.annotations.add(image, np.zeros((64, 64), np.uint8), name="glands", classes=three)
    assert ft.start() is None
    assert "differ from the current model's (0 background, 1 nucleus)" in ft.status_text(), ft.status_text()



def test_a_label_outside_the_classes_is_refused_when_marking(setup):
    """A label painted with a number the classes do not have (napari's label counter goes up to any
    number) would be misread or refused by fine-tuning: marking says so at once and stores nothing."""
    viewer, widget = setup
    panel = widget.annotation_panel
    _, labels = _image_and_labels(viewer)
    labels.data[3:9, 4:12] = 3  # the 2-class layer painted with label 3
    labels.refresh()
    panel.select("slide labels", "slide", region="whole image")
    assert panel.mark_corrected() is None
    assert panel.status_text() == (
        "Cannot mark as corrected: the labels layer 'slide labels' holds label 3, but its classes are "
        "0 background, 1 nucleus. Paint only with these labels (the label number in the layer controls), "
        "or erase label 3.")
    assert len(widget.state.annotations) == 0
    labels.data[labels.data == 3] = 1  # corrected: it is stored
    assert panel.mark_corrected() is not None and len(widget.state.annotations) == 1

def test_edits_survive_a_finetuning_that_ends_and_re_segments(setup):
    viewer, widget = setup
    image = viewer.add_image(np.random.default_rng(2).integers(0, 255, (48, 48, 3), dtype=np.uint8), name="other",
                             rgb=True)
    seg = widget.segment_panel
    seg.run([image])
    labels = viewer.layers["other labels"]
    labels.data[:6, :6] = 1  # the user's edit (while the fine-tuning runs)
    labels.refresh()
    edited = labels.data.copy()
    asked = []

    def ask(title, text):
        asked.append(title)
        return title.startswith("Re-segment")  # yes to re-segmenting, no to replacing the edited labels

    widget.state.ask = ask
    widget.finetune_panel.offer_resegment()  # what a finished fine-tuning does
    assert asked == ["Re-segment with the new model?", "Replace the edited labels?"]
    assert np.array_equal(viewer.layers["other labels"].data, edited)  # the edit is intact
    assert "other labels [1]" in viewer.layers  # the new result beside it



def test_edits_made_while_the_re_segmentation_runs_are_not_overwritten(setup, monkeypatch):
    """The user keeps painting the labels of an image while a fine-tuning's re-segmentation of that same
    image runs in its worker thread: when the result arrives, the edit is detected and kept."""
    import threading

    from napari_genselfdiff.core.progress import Returning
    from napari_genselfdiff.plugin._testing import wait_for
    from napari_genselfdiff.plugin.widgets import segment_panel as module

    viewer, widget = setup
    monkeypatch.delenv("GENSELFDIFF_NOTHREADS")  # workers in threads, as in napari
    image = viewer.add_image(np.random.default_rng(2).integers(0, 255, (64, 96, 3), dtype=np.uint8), name="other",
                             rgb=True)
    seg = widget.segment_panel
    seg.run([image])
    wait_for(lambda: not widget.state.running("segment"), 120, "the first segmentation")
    labels = viewer.layers["other labels"]
    first = labels.data.copy()
    # hold the re-segmentation after its first tile until the user has edited
    started, release = threading.Event(), threading.Event()
    original = module.segment_images

    def gated(*args, **kwargs):
        events = Returning(original(*args, **kwargs))
        for event in events:
            yield event
            if event["kind"] == "progress" and not started.is_set():  # the driver's first tile
                started.set()
                release.wait(120)
        return events.value

    monkeypatch.setattr(module, "segment_images", gated)
    asked = []

    def ask(title, text):
        asked.append(title)
        return title.startswith("Re-segment")  # yes to re-segmenting, no to replacing the edited labels

    widget.state.ask = ask
    assert widget.finetune_panel.offer_resegment() is not None  # what a finished fine-tuning does
    try:
        wait_for(started.is_set, 120, "the re-segmentation to start")
        assert widget.state.running("segment")
        labels.brush_size = 5
        labels.paint((20, 30), 1)  # the brush, as the user paints (with undo history)
        labels.data[40:44, 60:70] = 0  # and an erased stroke
        labels.refresh()
        edited = labels.data.copy()
        assert not np.array_equal(edited, first)
    finally:
        release.set()
    wait_for(lambda: not widget.state.running("segment"), 120, "the re-segmentation")
    assert widget.segment_panel.outcome == "done"
    assert asked == ["Re-segment with the new model?", "Replace the edited labels?"]
    assert viewer.layers["other labels"] is labels and np.array_equal(labels.data, edited)  # every edit kept
    assert np.array_equal(viewer.layers["other labels [1]"].data, first)  # the new result beside it (same model)

def test_finetune_panel_says_what_happened_to_a_killed_run_and_resumes_it(setup, tmp_path):
    from napari_genselfdiff.plugin._subprocess import TrainingProcessDied

    viewer, widget = setup
    ft = widget.finetune_panel
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    widget.state.annotations.add(image, np.zeros((64, 64), np.uint8), name="a", classes=CLASSES)
    ft.run_dir.setText(str(tmp_path / "run"))
    assert not ft.config().resume
    ft.resume_box.setChecked(True)
    assert ft.config().resume and ft.config().out_dir == str(tmp_path / "run")
    # the message of tests/plugin/test_reliability.py's kill -9, as the worker reports it
    ft._on_errored(TrainingProcessDied(
        "the training process was killed (SIGKILL, e.g. by kill -9 or the out-of-memory killer). Its last "
        f"checkpoint (step 6) is kept in {tmp_path / 'run'}; resume from it to continue from that step."))
    text = ft.status_text()
    assert text.startswith("Cannot fine-tune: the training process was killed (SIGKILL") and ft.outcome == "failed"
    assert text.endswith("To continue: tick 'resume its latest checkpoint' and press Start fine-tuning.")
