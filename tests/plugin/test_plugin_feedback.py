"""What the widget tells the user: each job's last word stays in full in its panel's status
line while toasts stay short; the Train tab leads with fine-tuning; read-only fields show the real
model; models are listed by display name; the provenance says which images trained and which
validated; labels layers sit on their image and a re-segmentation replaces instead of stacking."""

from __future__ import annotations

import numpy as np
import pytest

from napari_genselfdiff.plugin._notify import TOAST_CHARS
from napari_genselfdiff.plugin._testing import docked_with_model, wait_for

pytestmark = pytest.mark.gui

CLASSES = ("background", "nucleus")


@pytest.fixture
def setup(make_napari_viewer, make_model, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    _, info, path = make_model(classes=CLASSES)
    widget, log = docked_with_model(viewer, path, monkeypatch, tmp_path)
    yield viewer, widget, log
    widget.stop_jobs(60)
    log.close()


def _toasts_fit(log) -> None:
    assert all(len(message) <= TOAST_CHARS for _, message in log.items), log.items


def _settle(ms: int = 300) -> None:
    from qtpy.QtTest import QTest

    QTest.qWait(ms)


# -- the last word of a job ------------------------------------------------------------------------


@pytest.mark.parametrize("tile, tiles", [(512, 1), (128, 25)])
def test_finish_message_stays_after_segmentation(setup, monkeypatch, tile, tiles):
    """Updating napari's progress bar can process pending events (the activity dock of a shown
    window does), so the job's end is handled INSIDE the last progress update; the finish message
    must still be the last word, and stay."""
    from napari.utils import progress
    from qtpy.QtWidgets import QApplication

    viewer, widget, log = setup
    update = progress.update

    def update_and_process(self, n=1):
        update(self, n)
        QApplication.processEvents()

    monkeypatch.setattr(progress, "update", update_and_process)
    image = viewer.open_sample("napari-genselfdiff", "he_nuclei")[0]
    panel = widget.segment_panel
    panel._tile.setValue(tile)
    seen = []
    worker = panel.run()
    worker.yielded.connect(seen.append)
    wait_for(lambda: not widget.state.running("segment"), 600, "the segmentation")
    _settle()
    assert panel.outcome == "done"
    assert max(e.get("total", 0) for e in seen if e["kind"] == "progress") == tiles
    text = panel.status_text()
    assert text.startswith(f"Segmented 1 image(s) in {panel.last_seconds:.1f} s on cpu"), text
    assert "tile" not in text
    assert f"{image.name} labels" in viewer.layers
    log.find("Segmented 1 image(s)", "info")
    _toasts_fit(log)


def test_cancel_and_refusal_are_the_last_word(setup):
    viewer, widget, log = setup
    panel = widget.segment_panel
    assert panel.run() is None  # no image open
    assert panel.status_text() == (
        "No image layer to segment: open an H&E image first (File > Open, or File > Open Sample > "
        "napari-genselfdiff)."
    )
    assert log.messages("error") == ["No image layer to segment."]
    viewer.open_sample("napari-genselfdiff", "he_nuclei")
    panel._tile.setValue(64)

    def cancel_on_first_tile(event):
        if event["kind"] == "progress" and event["done"] == 1:
            panel.cancel()

    panel.run().yielded.connect(cancel_on_first_tile)
    wait_for(lambda: not widget.state.running("segment"), 120, "the cancelled segmentation")
    _settle()
    assert panel.outcome == "cancelled" and panel.status_text() == "Segmentation cancelled."
    _toasts_fit(log)


def test_failed_finetune_keeps_its_reason_in_the_panel(setup, tmp_path):
    viewer, widget, log = setup
    ft = widget.finetune_panel
    assert ft.start() is None  # nothing to train on
    assert ft.status_text().startswith(
        "Cannot fine-tune: Nothing to fine-tune on: the annotation set is empty. Correct a segmentation and "
        "press 'Mark as corrected' (Correct tab), or give folders of images and masks.")
    assert log.messages("error") == ["Cannot fine-tune: Nothing to fine-tune on."]
    # a run that fails in the training process: its run folder is a file
    from conftest import synthetic_he

    for seed in (0, 1):
        image = synthetic_he(64, 64, seed=seed)
        widget.state.annotations.add(image, (image.mean(-1) < 130).astype(np.uint8), name=f"corrected {seed}")
    blocker = tmp_path / "not a folder"
    blocker.write_text("x")
    ft.run_dir.setText(str(blocker))
    ft.patch.setValue(32)
    ft.steps.setValue(2)
    log.clear()
    assert ft.start() is not None
    wait_for(lambda: not widget.state.running("finetune"), 600, "the failing fine-tuning")  # child start-up: slow on a busy machine
    _settle()
    assert ft.outcome == "failed"
    text = ft.status_text()
    assert text.startswith("Cannot fine-tune: ") and str(blocker) in text, text
    assert log.messages("error") == ["Fine-tuning failed; see the Train tab."]
    _toasts_fit(log)


# -- the Train tab and read-only fields ------------------------------------------------------------


def test_train_tab_leads_with_finetuning_and_folds_pretraining(setup):
    from superqt import QCollapsible

    from napari_genselfdiff.plugin.widgets.finetune_panel import START_PRETRAINED

    _, widget, _ = setup
    page = widget.tabs.widget(2).widget()
    items = [page.layout().itemAt(i).widget() for i in range(page.layout().count())]
    items = [w for w in items if w is not None]
    assert items[0] is widget.finetune_panel
    # what pretraining was measured to add, right above the section that offers it (visible while folded)
    assert items[1] is widget.pretrain_panel.worth and "Measured" in items[1].text()
    section = items[2]
    assert isinstance(section, QCollapsible) and section is widget.pretrain_section
    assert not section.isExpanded() and "Pretrain" in section.text()
    assert widget.pretrain_panel.isAncestorOf(widget.pretrain_panel.controls.start)
    assert section.isAncestorOf(widget.pretrain_panel)
    # widget order on the page: fine-tuning's Start button comes before anything of pretraining
    finetune_y = widget.finetune_panel.controls.start.mapTo(page, widget.finetune_panel.controls.start.rect().topLeft()).y()
    assert finetune_y < section.mapTo(page, section.rect().topLeft()).y()
    # asking to start from a pretrained model that does not exist yet opens the section
    widget.finetune_panel.start_from.setCurrentText(START_PRETRAINED)
    assert section.isExpanded()


def test_network_box_shows_the_start_models_network(setup, make_model):
    from napari_genselfdiff.plugin.widgets.finetune_panel import START_CURRENT, START_PRETRAINED, START_SCRATCH

    _, widget, _ = setup
    ft = widget.finetune_panel
    assert not ft.arch.isEnabled() and ft.arch.currentText() == "custom (8-16-16-32)"  # the micro test model
    _, _, tiny = make_model(preset="tiny", classes=CLASSES, name="tiny")
    assert widget.model_panel.load(tiny)
    assert ft.arch.currentText() == "tiny (16-32-64-128)" and not ft.arch.isEnabled()
    ft.start_from.setCurrentText(START_PRETRAINED)
    assert ft.arch.currentText() == "(no pretrained model yet)" and not ft.arch.isEnabled()
    _, _, pretrained = make_model(preset="small", head="noise", name="pretrained")
    widget.pretrain_panel.model_path = pretrained
    widget.pretrain_panel.model_ready.emit(pretrained)
    assert ft.arch.currentText() == "small (32-64-128-256)"
    ft.start_from.setCurrentText(START_SCRATCH)
    assert ft.arch.isEnabled() and ft.arch.currentText() == "nuclei"  # WIDGET_PRESET
    assert [ft.arch.itemText(i) for i in range(ft.arch.count())] == ["nuclei", "tiny", "small", "paper"]
    ft.arch.setCurrentText("tiny")
    ft.arch.activated.emit(0)
    ft.start_from.setCurrentText(START_CURRENT)
    assert ft.arch.currentText() == "tiny (16-32-64-128)"
    ft.start_from.setCurrentText(START_SCRATCH)
    assert ft.arch.currentText() == "tiny"  # the user's choice for scratch is kept


# -- model names and provenance ----------------------------------------------------------------------


def test_models_are_listed_by_display_name_with_the_file_as_tooltip(setup, make_model, tmp_path):
    _, widget, log = setup
    provenance = {"stage": "finetune", "date": "2026-11-30T11:52:00+00:00", "parent": "/models/nuclei.safetensors",
                  "data": {"folders": [], "train_images": ["a", "b"], "val_images": ["c"], "in_memory_arrays": 3}}
    _, _, best = make_model(classes=CLASSES, provenance=provenance, name="best")
    run2 = tmp_path / "run2"
    run2.mkdir()
    other = run2 / "best.safetensors"
    other.write_bytes(best.read_bytes())  # same card: told apart by the file name
    _, _, last = make_model(classes=CLASSES, provenance={**provenance, "cancelled": True}, name="last")
    for path in (best, other, last):
        assert widget.model_panel.load(path)
    entries = {path: (text, tip) for text, path, tip in widget.model_panel.choices() if path}
    text, tip = entries[str(last)]
    assert text.startswith("nucleus, fine-tuned on 2 corrected images, 30 Nov") and text.endswith("stopped early")
    assert tip == str(last)
    assert ".safetensors" not in text
    assert entries[str(best)][0].endswith("[best.safetensors]") and entries[str(other)][0].endswith("[best.safetensors]")
    assert widget.model_panel._info.toPlainText().startswith(text)  # the name heads the description


def test_provenance_says_which_images_trained_and_validated(make_model):
    from napari_genselfdiff.plugin.widgets.model_panel import describe_model

    def describe(train, val, metrics):
        prov = {"stage": "finetune", "metrics": metrics,
                "data": {"folders": [], "train_images": train, "val_images": val, "in_memory_arrays": len(train + val),
                         "patches": 49}}
        return describe_model(make_model(provenance=prov)[1])

    text = describe(["slide", "crop"], [], {})
    assert "trained on: 2 images (slide, crop) from corrected pairs of the annotation set, 49 patches" in text
    assert "validated on: nothing held out (fewer than 3 images: all trained); no held-out score" in text
    assert "metrics" not in text and "from napari layers" not in text
    text = describe(["slide"], ["crop"], {"mean_iou": 0.965})  # an older model: one pair held out
    assert "validated on: 1 image (crop); no held-out score shown" in text
    assert "0.965" not in text
    text = describe(["a", "b", "c", "d"], ["e"], {"mean_iou": 0.71})
    assert "validated on: 1 image (e) (held out" in text and "held-out metrics: mean_iou 0.710" in text


def test_finetune_with_fewer_than_three_pairs_holds_nothing_out(setup):
    _, widget, _ = setup
    from conftest import synthetic_he

    ft = widget.finetune_panel
    for seed in (0, 1):
        image = synthetic_he(64, 64, seed=seed)
        widget.state.annotations.add(image, (image.mean(-1) < 130).astype(np.uint8), name=f"corrected {seed}")
    cfg = ft.config()
    assert cfg.val_fraction == 0.0 and ft.planned == (2, True)
    image = synthetic_he(64, 64, seed=2)
    widget.state.annotations.add(image, (image.mean(-1) < 130).astype(np.uint8), name="corrected 2")
    cfg = ft.config()
    assert cfg.val_fraction == pytest.approx(0.2) and ft.planned == (3, False)


# -- where the labels go -----------------------------------------------------------------------------


def test_labels_take_their_images_placement_and_replace_instead_of_stacking(setup, monkeypatch):
    viewer, widget, _ = setup
    monkeypatch.setenv("GENSELFDIFF_NOTHREADS", "1")
    rng = np.random.default_rng(0)
    small = viewer.add_image(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), name="small", rgb=True,
                             scale=(2.0, 2.0), translate=(100.0, 50.0))
    big = viewer.add_image(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), name="big", rgb=True)
    panel = widget.segment_panel
    panel._instances.setChecked(True)
    panel._uncertainty.setChecked(False)  # the uncertainty layer's place: tests/core/test_uncertainty.py
    panel.run([small])
    names = [layer.name for layer in viewer.layers]
    assert names == ["small", "small labels", "small nuclei", "big"]  # on its image, under the other one
    labels = viewer.layers["small labels"]
    for layer in (labels, viewer.layers["small nuclei"]):
        assert tuple(layer.scale) == (2.0, 2.0) and tuple(layer.translate) == (100.0, 50.0)
        assert np.allclose(layer.extent.world, small.extent.world)
    assert "mirror-averaged" not in panel._status.text()
    # again, unedited (and averaged over mirror images, which the status says): the same layers get the new
    # result (nothing stacks)
    panel._flips.setChecked(True)
    panel.run([small])
    assert [layer.name for layer in viewer.layers] == names and viewer.layers["small labels"] is labels
    assert ", each tile mirror-averaged: 'small labels'" in panel._status.text()
    panel._flips.setChecked(False)
    # edited, and the user keeps the edit: the new result goes to a separate layer above the old one
    labels.data[:5, :5] = 1
    labels.refresh()
    asked = []
    widget.state.ask = lambda title, text: asked.append(text) or False
    panel.run([small])
    assert len(asked) == 1 and "'small labels' has been edited" in asked[0]
    names = [layer.name for layer in viewer.layers]
    assert names[:3] == ["small", "small labels", "small labels [1]"] and names[-1] == "big"
    assert (viewer.layers["small labels"].data[:5, :5] == 1).all()  # the edit is kept
    assert tuple(viewer.layers["small labels [1]"].translate) == (100.0, 50.0)
    # edited, and the user agrees: replaced in place
    edited = viewer.layers["small labels [1]"]
    edited.data[:] = 0
    edited.refresh()
    widget.state.ask = lambda title, text: True
    panel.run([small])
    assert viewer.layers["small labels [1]"] is edited and edited.data.any()
    # the big image's labels sit on the big image, at the origin
    panel.run([big])
    assert [layer.name for layer in viewer.layers][-3:] == ["big", "big labels", "big nuclei"]
    assert tuple(viewer.layers["big labels"].translate) == (0.0, 0.0)
